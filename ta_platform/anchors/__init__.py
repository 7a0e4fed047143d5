"""Thought-anchor sentence tables: character alignment, anchor labels and the DuckDB metadata store."""
