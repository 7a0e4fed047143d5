"""``ta-platform generate-data OUT [--seed N] [--problems N]``: write the embedded dataset to a folder.

Why a command: the embedded dataset is normally generated on first use under the storage root; this
writes it anywhere (to inspect it, serve it, or pin a seed) in the math-rollouts Hub layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (created; must be empty or a generated dataset)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (same seed -> byte-identical files)")
    parser.add_argument("--problems", type=int, default=24, help="number of problems (4 traces each)")


def run(args: argparse.Namespace) -> int:
    from ta_platform.rollouts.generator import MANIFEST_FILE, generate_dataset

    out: Path = args.out
    if args.problems < 1:
        print("error: --problems must be at least 1")
        return 2
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        print(f"error: {out} is not empty and holds no {MANIFEST_FILE}; refusing to write into it")
        return 2
    manifest = generate_dataset(out, seed=args.seed, n_problems=args.problems)
    print(
        f"wrote {manifest['n_traces']} traces ({manifest['n_chunks']} chunks, {args.problems} problems, "
        f"seed {args.seed}) to {out}"
    )
    return 0
