"""function_tag_probes: one asset on the shared sentence labels and activations. Thin: the work is in
ta_platform.function_tags.study; this module reads settings, writes files with provenance, records metadata."""

import dagster as dg
import pandas as pd

from ta_platform.common.hashing import code_version
from ta_platform.common.parquet_io import write_parquet
from ta_platform.common.paths import storage_path
from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.shared import activations_root
from ta_platform.store import artifacts

GROUP = "function_tags"
ALL_ACTIVATIONS = dg.AssetDep("sentence_activations", partition_mapping=dg.AllPartitionMapping())


def result_file(name: str):
    """``<storage>/function_tags/<name>``: predictions, tripwires, summary (parquet with provenance)."""
    return storage_path("function_tags", name)


class FunctionTagSettings(dg.ConfigurableResource):
    """The tag probed one-vs-rest (empty = the most common), seeds averaged, null permutations, resamples."""

    tag: str = ""
    seeds: list[int] = [0, 1]
    n_permutations: int = 5
    bootstrap_resamples: int = 200


@dg.asset(group_name=GROUP, deps=["sentence_labels", ALL_ACTIVATIONS], kinds={"scikitlearn", "parquet"})
def function_tag_probes(context: dg.AssetExecutionContext, function_tag_settings: FunctionTagSettings,
                        compute: ComputeResource) -> dg.MaterializeResult:
    """Linear probe vs position and text baselines for one function tag, per model x layer x setting."""
    from ta_platform.function_tags.study import choose_tag, probe_config, run_slices, summarise
    from ta_platform.probing.config import ProbeConfig
    from ta_platform.studies.activation_slices import iter_probe_slices

    s = function_tag_settings
    labels = pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS))
    tag = choose_tag(labels, s.tag)
    config = probe_config(ProbeConfig(), s.n_permutations)
    slices = iter_probe_slices(labels, activations_root(), {k: v.trace_models for k, v in compute.registry().items()})
    predictions, tripwires = run_slices(slices, tag, list(s.seeds), config, context.log.info)
    summary = summarise(predictions, labels, tag, s.bootstrap_resamples)
    provenance = {"tag": tag, "settings": s.model_dump(), "probe_config": config.as_dict(), "code_version": code_version()}
    for name, frame in (("predictions", predictions), ("tripwires", tripwires), ("summary", summary)):
        write_parquet(frame, result_file(f"{name}.parquet"), provenance)
    table = summary.to_markdown(index=False, floatfmt=".3f")
    context.log.info(f"function tag {tag!r}:\n{table}")
    from ta_platform.defs import study_headlines  # FLOAT keys for the Plots tab, headline for the CLI table

    return dg.MaterializeResult(metadata={"tag": tag, "n_slices": len(summary), "summary": dg.MetadataValue.md(table),
                                          "html_report": dg.MetadataValue.path(str(storage_path("reports", "index.html"))),
                                          **study_headlines.function_tags(summary)})
