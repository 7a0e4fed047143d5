"""Entry point of ``ta-platform``: dispatches to subcommand modules, importing each lazily.

Why lazy: ``ta-platform check-data`` should not pay for importing torch. Every subcommand module
exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check-data": ("ta_platform.cli.check_data", "validate a local folder in the math-rollouts Hub layout"),
    "generate-data": ("ta_platform.cli.generate_data", "write the embedded default dataset to a folder"),
    "fit-utilities": ("ta_platform.cli.fit_utilities", "fit Thurstonian utilities to pairwise outcomes"),
    "materialize": ("ta_platform.cli.materialize", "run the main job in the project's Dagster instance"),
    "gate": ("ta_platform.cli.gate", "evaluate the release gate from the latest asset-check evaluations"),
    "report": ("ta_platform.cli.report", "rebuild storage/reports/index.html: gate verdict, every study, provenance"),
    "plan": ("ta_platform.cli.plan", "per model: weights memory, tokens, traces over context, cached vs to compute"),
    "models": ("ta_platform.cli.models", "list the registry's models: offline?, pretrained?, partition keys"),
}
BENCHMARKS: dict[str, tuple[str, str]] = {
    "extraction": ("ta_platform.cli.bench_extraction", "naive vs platform activation extraction"),
    "thurstone": ("ta_platform.cli.bench_thurstone", "platform Thurstonian fit vs the Adam reference"),
    "judge": ("ta_platform.cli.bench_judge", "platform logit judge vs generate-and-parse, same pairs and model"),
    "scale": ("ta_platform.cli.bench_scale", "each stage's time at three dataset sizes and its growth exponent"),
    "paper-scale": ("ta_platform.cli.bench_paper_scale", "each study's probe stage at the seeds' scale: time, memory, recovery"),
}


def _load(module_name: str):
    return importlib.import_module(module_name)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ta-platform", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    wanted = argv[0] if argv else None
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text)
        if name == wanted:
            _load(module_name).add_arguments(sub)
            sub.set_defaults(_module=module_name)
    bench = subparsers.add_parser("bench", help="benchmarks that print side-by-side ratios")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    wanted_bench = argv[1] if wanted == "bench" and len(argv) > 1 else None
    for name, (module_name, help_text) in BENCHMARKS.items():
        sub = bench_sub.add_parser(name, help=help_text)
        if name == wanted_bench:
            _load(module_name).add_arguments(sub)
            sub.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    from ta_platform.common.faults import DataFault

    try:
        return int(_load(args._module).run(args) or 0)
    except DataFault as fault:  # bad input (e.g. a malformed TA_MODEL_REGISTRY read at import): one line, no traceback
        print(f"error: {fault}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
