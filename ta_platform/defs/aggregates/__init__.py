"""SQL models in dbt_like_sql/ as Dagster assets; dependencies are read from the SQL files."""
