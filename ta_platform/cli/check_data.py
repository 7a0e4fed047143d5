"""``ta-platform check-data PATH|hf://OWNER/NAME[@REV]``: validate a math-rollouts dataset or a study's input file.

PATH is a local folder in the Hub's folder layout; ``hf://...`` reads the Hub repo (``HF_ENDPOINT`` when
set) and first says which layout the pinned commit holds: ``folder`` (one file per trace file),
``parquet`` (the August 2025 re-publication: shards under ``data/``, one row per file) or both.
Prints per trace: sentences, aligned sentences, anchors and faults (each naming its file).
Exit status 0 only when every trace passes, 1 when any has a fault or the Hub stays unreachable;
never a traceback for bad data.

``--kind chains|needle|registry|prompts|outcomes FILE`` (or a file whose extension says it: ``.json``
chains, ``.jsonl`` needle, ``.csv``/``.parquet`` outcomes) validates one input file with the very
parser the pipeline uses (``chains/records.py``, ``needle/dataset.py``, ``extraction/registry.py``,
``preferences/ood.py``, ``preferences/outcomes_io.py``), so a file is checked in a second and not
minutes into a run. A whole-file fault prints ``error: <file>: <problem>``; the record-level faults
the chains and needle studies skip and record are printed one a line, each naming file, record and
problem. Writes nothing; exit 0 only when the file has no fault.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FILE_KINDS = ("chains", "needle", "registry", "prompts", "outcomes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="folder laid out like uzaymacar/math-rollouts, or hf://<owner>/<name>[@revision]")
    parser.add_argument("--json", action="store_true", help="print one JSON object per trace (or per fault)")
    parser.add_argument("--kind", choices=FILE_KINDS, default=None,
                        help="validate PATH as a study input file of this kind (default: by extension)")


def run(args: argparse.Namespace) -> int:
    from ta_platform.anchors.data_check import check_source
    from ta_platform.common.faults import DataFault
    from ta_platform.rollouts.sources import HF_SCHEME, LocalRolloutSource

    spec = str(args.path)
    if args.kind or (not spec.startswith(HF_SCHEME) and Path(spec).is_file()):
        from ta_platform.cli.check_file import check_file

        return check_file(spec, args.kind, as_json=args.json)
    if spec.startswith(HF_SCHEME):
        source = _hub_source(spec)
        if source is None:
            return 1
    elif not Path(spec).is_dir():
        print(f"{spec}: not a folder", file=sys.stderr)
        return 1
    else:
        source = LocalRolloutSource(Path(spec))
    try:
        reports = check_source(source)
    except DataFault as fault:
        print(str(fault), file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as error:  # the Hub unreachable after retries, a revision that does not exist
        print(f"{spec}: {error}", file=sys.stderr)
        return 1
    if not reports:
        print(f"{spec}: no traces found in the math-rollouts layout", file=sys.stderr)
        return 1
    if args.json:
        for r in reports:
            print(json.dumps({"trace": r.trace_key, "sentences": r.n_sentences, "aligned": r.n_aligned,
                              "anchors": r.n_anchors, "faults": r.faults}))
    else:
        width = max(len(r.trace_key) for r in reports)
        print(f"{'trace':<{width}}  sentences  aligned  anchors  status")
        for r in reports:
            status = "ok" if r.ok else "FAULT"
            print(f"{r.trace_key:<{width}}  {r.n_sentences:>9}  {r.n_aligned:>7}  {r.n_anchors:>7}  {status}")
            for fault in r.faults:
                print(f"    {fault}")
    failed = sum(not r.ok for r in reports)
    print(f"{len(reports) - failed} of {len(reports)} traces pass", file=sys.stderr)
    return 1 if failed else 0


def _hub_source(spec: str):
    """The Hub source of ``spec`` with its layout reported on stderr; None (message printed) when it fails."""
    from huggingface_hub.errors import HfHubHTTPError

    from ta_platform.rollouts.sources import source_from_spec

    try:
        source = source_from_spec(spec)
        layout = source.layout()
    except (ValueError, RuntimeError, OSError, HfHubHTTPError) as error:
        print(f"{spec}: {error}", file=sys.stderr)
        return None
    print(f"{spec}: {layout} layout ({source.describe()})", file=sys.stderr)
    return source
