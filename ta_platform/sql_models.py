"""dbt-like SQL models: one readable ``.sql`` file per table, dependencies read from the file.

A model ``dbt_like_sql/<name>.sql`` is a single SELECT. It names other models with
``{{ ref('other_model') }}`` and tables written by Python assets with ``{{ source('table') }}``;
nothing else is needed to add a model (no Python). ``render`` turns a model into
``CREATE OR REPLACE TABLE <name> AS <select>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ta_platform.common.paths import REPO_ROOT

SQL_DIR = REPO_ROOT / "dbt_like_sql"
_REF = re.compile(r"\{\{\s*ref\(\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\)\s*\}\}")
_SOURCE = re.compile(r"\{\{\s*source\(\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SqlModel:
    name: str
    path: Path
    sql: str
    refs: tuple[str, ...]
    sources: tuple[str, ...]
    description: str

    def render(self) -> str:
        body = _SOURCE.sub(lambda m: f'"{m.group(1)}"', _REF.sub(lambda m: f'"{m.group(1)}"', self.sql))
        return f'CREATE OR REPLACE TABLE "{self.name}" AS\n{body.strip().rstrip(";")}'


def _description(sql: str) -> str:
    lines = [line[2:].strip() for line in sql.splitlines() if line.startswith("--")]
    return " ".join(lines) or "SQL model"


def load_models(folder: Path = SQL_DIR) -> dict[str, SqlModel]:
    """All models in the folder; raises ValueError on a bad name, an unknown ref or a cycle."""
    models: dict[str, SqlModel] = {}
    for path in sorted(folder.glob("*.sql")):
        name = path.stem
        if not _NAME.match(name):
            raise ValueError(f"{path}: model name {name!r} is not a valid SQL identifier")
        sql = path.read_text()
        models[name] = SqlModel(name, path, sql, tuple(dict.fromkeys(_REF.findall(sql))),
                                tuple(dict.fromkeys(_SOURCE.findall(sql))), _description(sql))
    for model in models.values():
        unknown = [ref for ref in model.refs if ref not in models]
        if unknown:
            raise ValueError(f"{model.path}: ref to unknown model(s) {unknown}")
    topological_order(models)
    return models


def topological_order(models: dict[str, SqlModel]) -> list[str]:
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            raise ValueError(f"cycle in SQL models: {' -> '.join((*trail, name))}")
        state[name] = "active"
        for ref in models[name].refs:
            visit(ref, (*trail, name))
        state[name] = "done"
        order.append(name)

    for name in sorted(models):
        visit(name, ())
    return order
