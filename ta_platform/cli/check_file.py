"""``ta-platform check-data --kind KIND FILE``: one study input file through the pipeline's own parser.

Why the same parser and not a schema of its own: a checker that disagrees with the pipeline is worse
than none. Each kind calls exactly what the pipeline calls on that file:

- ``chains``: ``read_records`` + ``build_chain_table`` (TA_CHAINS_SOURCE, the backtracking study);
- ``needle``: ``read_jsonl`` (TA_NEEDLE_SOURCE, the needle study);
- ``registry``: ``load_registry`` for every profile of the file (TA_MODEL_REGISTRY);
- ``prompts``: ``load_prompt_set`` against every topic the task pool can hold (the OOD study);
- ``outcomes``: ``read_outcomes`` (``ta-platform fit-utilities``).

Whole-file faults raise in those parsers and are printed as ``error: <file>: <problem>``; the
record-level faults the chains and needle studies record and skip are printed one a line. Nothing
is written. Exit 0 only when the file has no fault at all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BY_EXTENSION = {".json": "chains", ".jsonl": "needle", ".csv": "outcomes", ".parquet": "outcomes", ".pq": "outcomes"}


def check_file(path: str, kind: str | None, *, as_json: bool = False) -> int:
    from ta_platform.common.faults import DataFault

    kind = kind or BY_EXTENSION.get(Path(path).suffix.lower())
    if kind is None:
        print(f"error: {path}: cannot tell the kind of file from its extension; give --kind "
              "chains|needle|registry|prompts|outcomes", file=sys.stderr)
        return 1
    try:
        n_records, faults = CHECKS[kind](path)
    except (DataFault, FileNotFoundError) as fault:  # a whole-file fault: the pipeline refuses the file
        print(f"error: {fault}", file=sys.stderr)
        return 1
    for record, problem in faults:
        print(json.dumps({"file": path, "record": record, "problem": problem}) if as_json
              else f"{path}: {record}: {problem}")
    print(f"{path}: {kind}: {n_records - len(faults)} of {n_records} records pass", file=sys.stderr)
    return 1 if faults else 0


def _chains(path: str) -> tuple[int, list[tuple[str, str]]]:
    from ta_platform.chains.records import build_chain_table, read_records

    records = read_records(path)
    table = build_chain_table(records, source=path)
    return len(records), [(f"chain {fault.item!r}", fault.problem) for fault in table.faults]


def _needle(path: str) -> tuple[int, list[tuple[str, str]]]:
    from ta_platform.needle.dataset import read_jsonl

    docs, faults = read_jsonl(path)
    prefix = f"{path}:"
    # fault.path reads "<file>:<line> (doc <id>)": keep the record part after the file name
    return len(docs) + len(faults), [(_record_of(fault.path, prefix), fault.problem) for fault in faults]


def _record_of(where: str, prefix: str) -> str:
    return f"line {where[len(prefix):]}" if where.startswith(prefix) else where


def _registry(path: str) -> tuple[int, list[tuple[str, str]]]:
    import tomllib

    from ta_platform.extraction.registry import load_registry

    specs = load_registry(path=path)  # the pipeline's reading: text, TOML and the default profile's entries
    profiles = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("profiles")  # read sound just above
    for name in profiles if isinstance(profiles, dict) else []:
        specs = {**specs, **{f"{name}/{key}": spec for key, spec in load_registry(name, path).items()}}
    return len(specs), []


def _prompts(path: str) -> tuple[int, list[tuple[str, str]]]:
    from ta_platform.preferences.ood import load_prompt_set
    from ta_platform.preferences.tasks import TOPICS

    return len(load_prompt_set(path, TOPICS)), []


def _outcomes(path: str) -> tuple[int, list[tuple[str, str]]]:
    from ta_platform.preferences.outcomes_io import read_outcomes

    return len(read_outcomes(path)), []


CHECKS = {"chains": _chains, "needle": _needle, "registry": _registry, "prompts": _prompts, "outcomes": _outcomes}
