"""The function-tag study's checks; the release gate reads them like every other check."""

import dagster as dg
import pandas as pd

from ta_platform.defs.function_tags.assets import function_tag_probes, result_file
from ta_platform.store import artifacts


@dg.asset_check(asset=function_tag_probes, description="Every trace model and setting has sentences with and "
                "without the probed tag (a one-class label set cannot be probed).")
def function_tag_both_classes() -> dg.AssetCheckResult:
    from ta_platform.common.parquet_io import read_provenance
    from ta_platform.function_tags.study import class_counts

    tag = read_provenance(result_file("summary.parquet"))["tag"]
    counts = class_counts(pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS)), tag)
    bad = counts[(counts["n_positive"] == 0) | (counts["n_positive"] == counts["n"])]
    return dg.AssetCheckResult(passed=bad.empty and not counts.empty, metadata={
        "tag": tag, "counts": dg.MetadataValue.md(counts.to_markdown(index=False)),
        "one_class": [f"{r.model}/{r.setting}: {r.n_positive} of {r.n}" for r in bad.itertuples()]})


def _tripwire_check(name: str, description: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=function_tag_probes, name=f"function_tag_{name}", description=description)
    def _check() -> dg.AssetCheckResult:
        rows = pd.read_parquet(result_file("tripwires.parquet"))
        rows = rows[rows["tripwire"] == name]
        failed = rows[~rows["passed"].astype(bool)]
        return dg.AssetCheckResult(passed=failed.empty and not rows.empty, metadata={
            "n_slices": len(rows), "failed": [f"{r.model_key}/{r.layer_key}/{r.setting}: {r.reason_code}: {r.detail}"
                                              for r in failed.itertuples()]})

    return _check


tripwire_checks = [
    _tripwire_check("planted_signal", "Planted label+noise features are recovered through the same probe path."),
    _tripwire_check("permutation_null", "Probes on tags permuted within position bins of a problem score at chance."),
]
