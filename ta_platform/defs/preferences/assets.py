"""task_pool -> prompt_activations -> pairwise_preferences -> thurstonian_utilities -> utility_probes
-> preference_summary. Thin: the work is in ta_platform.preferences and ta_platform.studies."""

import base64

import dagster as dg
import numpy as np
import pandas as pd

from ta_platform.common.atomic import atomic_write_bytes
from ta_platform.common.hashing import code_version
from ta_platform.common.parquet_io import read_provenance, write_parquet
from ta_platform.common.paths import storage_path
from ta_platform.defs.compute import GPU_POOL, ComputeResource
from ta_platform.defs.k8s import GPU_OP_TAGS
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.defs.shared import activation_partitions, requested_layers
from ta_platform.store.artifacts import pref_file, prompt_root

GROUP = "preferences"
ALL_PROMPT_ACTIVATIONS = dg.AssetDep("prompt_activations", partition_mapping=dg.AllPartitionMapping())


PREFERENCE_PROFILE_ENV = "TA_PREFERENCE_PROFILE"
# The study's switch: TA_PREFERENCE_PROFILE picks the defaults of PreferenceSettings (read when the code
# location is imported). "simulated": the known-truth study of the main job. "real": the real pretrained
# judge (smollm2-135m, greedy choices from its option logits), sized to run in ~10 minutes on a 2-core
# CPU. "real-small": the same path at a size CI can afford (a couple of minutes).
PREFERENCE_PROFILES: dict[str, dict] = {
    "simulated": {},
    "real": {"n_tasks": 120, "judge": "hf", "judge_model": "smollm2-135m", "judge_choice": "greedy",
             "samples_per_pair": 1, "pairs_per_round": 120, "max_comparisons": 240, "n_heldout_pairs": 60},
    "real-small": {"n_tasks": 30, "judge": "hf", "judge_model": "smollm2-135m", "judge_choice": "greedy",
                   "samples_per_pair": 1, "pairs_per_round": 30, "max_comparisons": 30, "n_heldout_pairs": 15},
}


def preference_profile(name: str | None = None) -> dict:
    """The defaults of the named profile (default: ``$TA_PREFERENCE_PROFILE`` or "simulated")."""
    import os

    name = name or os.environ.get(PREFERENCE_PROFILE_ENV, "") or "simulated"
    if name not in PREFERENCE_PROFILES:
        raise ValueError(f"{PREFERENCE_PROFILE_ENV}={name!r}: unknown preference profile "
                         f"(known: {sorted(PREFERENCE_PROFILES)})")
    return PREFERENCE_PROFILES[name]


_PROFILE = preference_profile()


class PreferenceSettings(dg.ConfigurableResource):
    """Task pool size, the judge, active-learning budget and seeds (all stored as provenance).
    ``judge``: "simulated" (hidden utilities read from the judge model's prompt activations) or "hf"
    (the judge model answers from its next-token logits). ``judge_choice`` (hf): "sample" draws each
    choice from the judge's order-averaged probability, "greedy" takes the likelier option.
    Defaults come from the profile named by ``TA_PREFERENCE_PROFILE`` (``PREFERENCE_PROFILES``)."""

    n_tasks: int = _PROFILE.get("n_tasks", 1200)
    n_topics: int = 10
    eval_fraction: float = 0.3
    seed: int = 0
    judge: str = _PROFILE.get("judge", "simulated")
    # empty = tiny-llama where the registry has it (the documented embedded judge), else the first model
    judge_model: str = _PROFILE.get("judge_model", "")
    judge_layer: str = ""  # empty = the middle configured layer
    judge_choice: str = _PROFILE.get("judge_choice", "sample")
    samples_per_pair: int = _PROFILE.get("samples_per_pair", 3)
    pairs_per_round: int = _PROFILE.get("pairs_per_round", 300)
    max_comparisons: int = _PROFILE.get("max_comparisons", 20000)
    n_heldout_pairs: int = _PROFILE.get("n_heldout_pairs", 500)
    truth_spearman_bound: float = 0.8  # simulated judge: fitted vs planted mu, per task set (a blocking check)

    def active_learning_config(self):
        from ta_platform.preferences.active_learning import ActiveLearningConfig

        return ActiveLearningConfig(samples_per_pair=self.samples_per_pair, pairs_per_round=self.pairs_per_round,
                                    max_comparisons=self.max_comparisons, n_heldout_pairs=self.n_heldout_pairs,
                                    seed=self.seed)


@dg.asset(group_name=GROUP, kinds={"parquet", "duckdb"})
def task_pool(context: dg.AssetExecutionContext, preference_settings: PreferenceSettings,
              metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Tasks (id, prompt, origin, topic) split into disjoint train and eval sets."""
    from ta_platform.preferences.tasks import generate_task_pool

    s = preference_settings
    pool = generate_task_pool(s.n_tasks, s.n_topics, seed=s.seed, eval_fraction=s.eval_fraction)
    provenance = {"n_tasks": s.n_tasks, "n_topics": s.n_topics, "eval_fraction": s.eval_fraction, "seed": s.seed,
                  "code_version": code_version()}
    write_parquet(pool, pref_file("task_pool.parquet"), provenance)
    metadata_store.store().replace_slice("task_pool", pool)
    counts = pool.groupby("task_set").size().to_dict()
    context.log.info(f"{len(pool)} tasks over {pool['topic'].nunique()} topics: {counts}")
    return dg.MaterializeResult(metadata={"n_tasks": len(pool), "sets": counts, "n_topics": int(pool["topic"].nunique())})


@dg.asset(group_name=GROUP, partitions_def=activation_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
          pool=GPU_POOL, deps=[task_pool], kinds={"pytorch", "numpy"}, op_tags=GPU_OP_TAGS)
def prompt_activations(context: dg.AssetExecutionContext, compute: ComputeResource) -> dg.MaterializeResult:
    """Activations at the last prompt token, per model x layer, with the same extraction core,
    batching, staleness fingerprints and provenance as sentence_activations."""
    from ta_platform.studies.sentence_extraction import extract_stale_layers, prompt_trace_inputs

    pool_file = pref_file("task_pool.parquet")
    traces = prompt_trace_inputs(pd.read_parquet(pool_file))
    registry = compute.registry()
    fingerprints = {}
    for model_key, layers in requested_layers(context.partition_keys).items():
        with compute.loaded(registry[model_key]) as loaded:  # the previous model is released first
            outcome = extract_stale_layers(loaded, traces, layers, prompt_root(), pooling="last",
                                           token_budget=compute.token_budget_for(loaded), log=context.log.info)
        fingerprints.update({f"{model_key}/{k}": v for k, v in outcome.fingerprints.items()})
    return dg.MaterializeResult(metadata={"fingerprints": fingerprints, "n_prompts": len(traces)})


DEFAULT_JUDGE_MODEL = "tiny-llama"


def _judge_partition(compute: ComputeResource, settings: PreferenceSettings) -> tuple[str, str]:
    model_key, _, layer = judge_partition_key(compute.registry(), settings).partition("/")
    return model_key, layer


def judge_partition_key(registry, settings: PreferenceSettings) -> str:
    """The one prompt-activation partition the preference study reads: ``"<judge model>/L<i>"``."""
    fallback = DEFAULT_JUDGE_MODEL if DEFAULT_JUDGE_MODEL in registry else sorted(registry)[0]
    model_key = settings.judge_model or fallback
    if model_key not in registry:
        raise ValueError(f"judge_model {model_key!r} is not in the model registry (known: {sorted(registry)})")
    keys = registry[model_key].layer_keys()
    return f"{model_key}/{settings.judge_layer or keys[len(keys) // 2]}"


def _load_prompt_matrix(pool: pd.DataFrame, model_key: str, layer: str) -> np.ndarray:
    from ta_platform.extraction.store import load_partition

    partition = load_partition(prompt_root() / model_key / layer)
    row_of = {key: row for row, key in enumerate(partition.index["trace_key"])}
    missing = [t for t in pool["task_id"] if t not in row_of]
    if missing:
        raise ValueError(f"prompt activations {model_key}/{layer} lack {len(missing)} tasks (e.g. {missing[:3]}); "
                         "materialise prompt_activations")
    return partition.rows([row_of[t] for t in pool["task_id"]])  # only the pool's rows, decoded from the maps


@dg.asset(group_name=GROUP, deps=[task_pool, ALL_PROMPT_ACTIVATIONS], kinds={"duckdb", "parquet"})
def pairwise_preferences(context: dg.AssetExecutionContext, preference_settings: PreferenceSettings,
                         compute: ComputeResource, metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Active-learning rounds of "which would you rather do?" per task set; held-out pairs drawn first.
    Every outcome (round, order, sample index, held-out flag) is stored in DuckDB."""
    from ta_platform.studies.preference_study import measure_preferences, planted_judge

    s = preference_settings
    pool = pd.read_parquet(pref_file("task_pool.parquet"))
    model_key, layer = _judge_partition(compute, s)
    if s.judge == "simulated":
        judge, truth = planted_judge(pool, _load_prompt_matrix(pool, model_key, layer), s.seed)
        write_parquet(truth, pref_file("planted_utilities.parquet"), {"judge_model": model_key, "layer": layer})
        outcomes = measure_preferences(pool, judge, s.active_learning_config(), context.log.info)
    elif s.judge == "hf":
        from ta_platform.studies.preference_study import judge_consistency, model_judge

        # Through the registry and the compute resource: its device, dtype and revision; released on exit.
        with compute.loaded(compute.registry()[model_key], lm_head=True) as held:
            judge = model_judge(held.model, held.tokenizer, s.judge_choice)
            outcomes = measure_preferences(pool, judge, s.active_learning_config(), context.log.info)
            consistency = judge_consistency(pool, outcomes, judge, f"hf:{model_key}:{s.judge_choice}")
        metadata_store.store().replace_slice("judge_consistency", consistency)
        write_parquet(consistency, pref_file("judge_consistency.parquet"), {"judge_model": model_key})
        context.log.info("judge self-consistency:\n" + consistency.to_string(index=False))
    else:
        raise ValueError(f"unknown judge {s.judge!r}: use 'simulated' or 'hf'")
    provenance = {"judge": s.judge, "judge_model": model_key, "judge_layer": layer, "seed": s.seed,
                  "active_learning": s.active_learning_config().__dict__, "code_version": code_version(),
                  "task_pool": read_provenance(pref_file("task_pool.parquet"))}
    write_parquet(outcomes, pref_file("pairwise_preferences.parquet"), provenance)
    metadata_store.store().replace_slice("pairwise_preferences", outcomes)
    return dg.MaterializeResult(metadata={"n_outcomes": len(outcomes), "n_heldout": int(outcomes["heldout"].sum()),
                                          "judge": f"{s.judge}:{model_key}/{layer}"})


@dg.asset(group_name=GROUP, deps=[pairwise_preferences], kinds={"scipy", "duckdb"})
def thurstonian_utilities(context: dg.AssetExecutionContext, preference_settings: PreferenceSettings,
                          metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """mu and sigma per task (train and eval sets), MAP with an analytic gradient; prior chosen on
    validation pairs split from training; held-out accuracy (with a bootstrap interval), log-loss and
    the accuracy ceiling max(p, 1-p) reported on held-out pairs never used for a choice."""
    from ta_platform.studies.preference_study import fit_utilities

    outcomes = pd.read_parquet(pref_file("pairwise_preferences.parquet"))
    fits = fit_utilities(outcomes, preference_settings.seed)
    utilities = pd.concat([f.utilities.assign(task_set=name) for name, f in fits.items()], ignore_index=True)
    summaries = pd.DataFrame([{"task_set": name, **f.summary()} for name, f in fits.items()])
    write_parquet(utilities, pref_file("thurstonian_utilities.parquet"), {"fits": summaries.to_dict("records")})
    store = metadata_store.store()
    store.replace_slice("thurstonian_utilities", utilities)
    store.replace_slice("thurstonian_fit_summary", summaries)
    for row in summaries.itertuples():
        context.log.info(f"{row.task_set}: held-out accuracy {row.heldout_accuracy:.3f} "
                         f"[{row.heldout_accuracy_low:.3f}, {row.heldout_accuracy_high:.3f}], "
                         f"log-loss {row.heldout_log_loss:.3f}, ceiling max(p,1-p) {row.noise_ceiling:.3f}, "
                         f"prior {row.prior_strength:g} chosen on validation pairs")
    consistency_file = pref_file("judge_consistency.parquet")
    if consistency_file.exists() and read_provenance(pref_file("pairwise_preferences.parquet")).get("judge") == "hf":
        consistency = pd.read_parquet(consistency_file).drop(columns=["heldout_accuracy"]).merge(
            summaries[["task_set", "heldout_accuracy"]], on="task_set", how="left")
        write_parquet(consistency, consistency_file, read_provenance(consistency_file))
        store.replace_slice("judge_consistency", consistency)
    return dg.MaterializeResult(metadata={"fits": dg.MetadataValue.md(summaries.to_markdown(index=False))})


@dg.asset(group_name=GROUP, deps=[thurstonian_utilities, ALL_PROMPT_ACTIVATIONS], kinds={"scikitlearn", "duckdb"})
def utility_probes(context: dg.AssetExecutionContext, preference_settings: PreferenceSettings,
                   compute: ComputeResource, metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Standardised Ridge probes (alpha on half the eval set, reported on the other half), raw and
    topic-demeaned, hold-one-topic-out, against a content baseline on identical splits."""
    from ta_platform.preferences.content import content_embeddings
    from ta_platform.preferences.utility_probes import utility_probe_report
    from ta_platform.studies.activation_slices import activation_partitions as stored_partitions

    pool = pd.read_parquet(pref_file("task_pool.parquet"))
    utilities = pd.read_parquet(pref_file("thurstonian_utilities.parquet"))
    features = {f"activations:{m}/{layer}": _load_prompt_matrix(pool, m, layer)
                for m, layer, _ in stored_partitions(prompt_root()) if m in compute.registry()}
    content = content_embeddings(pool["prompt"].tolist())
    features[f"content:{content.method}"] = content.matrix
    context.log.info(f"probing {len(features)} feature sets on {len(pool)} tasks")
    report = utility_probe_report(pool, utilities, features, seed=preference_settings.seed)
    write_parquet(report, pref_file("utility_probe_report.parquet"), {"content_method": content.method})
    metadata_store.store().replace_slice("utility_probe_report", report)
    return dg.MaterializeResult(metadata={"n_rows": len(report), "feature_sets": sorted(features),
                                          "content_baseline": content.method})


@dg.asset(group_name=GROUP, deps=[utility_probes], kinds={"duckdb", "markdown"})
def preference_summary(context: dg.AssetExecutionContext, metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Probe against content baseline side by side, in-distribution and held-out topic, with a plot."""
    from ta_platform.preferences.summary import (
        interval_table,
        long_summary,
        plot_summary,
        summarise_probes,
        summary_intervals,
    )

    report = pd.read_parquet(pref_file("utility_probe_report.parquet"))
    summary = summarise_probes(report)
    long = long_summary(summary, summary_intervals(report))
    metadata_store.store().replace_slice("preference_summary", long)
    png = plot_summary(summary)
    atomic_write_bytes(storage_path("reports", "preference_summary.png"), png)
    table = interval_table(long).to_markdown(index=False)
    context.log.info("\n" + table)
    from ta_platform.defs import study_headlines, summary_metadata  # FLOAT keys (Plots tab), table schema

    return dg.MaterializeResult(metadata={
        **study_headlines.preferences(long),
        **summary_metadata.duckdb_table_metadata(metadata_store.store(), "preference_summary"),
        "table": dg.MetadataValue.md(table),
        "plot": dg.MetadataValue.md(f"![preference summary](data:image/png;base64,{base64.b64encode(png).decode()})"),
        "html_report": dg.MetadataValue.path(str(storage_path("reports", "index.html"))),
    })
