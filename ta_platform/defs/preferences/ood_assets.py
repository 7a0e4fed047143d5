"""ood_prompt_set -> ood_behaviour -> ood_probe_deltas -> ood_results. Thin: the work is in
ta_platform.preferences.ood and ta_platform.studies.ood_study."""

import base64
import os

import dagster as dg
import pandas as pd

from ta_platform.common.atomic import atomic_write_bytes
from ta_platform.common.hashing import code_version
from ta_platform.common.parquet_io import read_provenance, write_parquet
from ta_platform.common.paths import storage_path
from ta_platform.defs.compute import GPU_POOL, ComputeResource
from ta_platform.defs.preferences.assets import (
    PreferenceSettings,
    judge_partition_key,
    pairwise_preferences,
    preference_profile,
    task_pool,
    thurstonian_utilities,
)
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.store.artifacts import pref_file

GROUP = "ood"
PROMPT_SET_ENV = "TA_OOD_PROMPT_SET"
# Per preference profile: how many targets and comparisons (the real judge costs a forward per order).
OOD_PROFILES: dict[str, dict] = {
    "simulated": {},
    "real": {"n_comparisons": 6, "n_per_topic": 2, "n_off_target": 2, "max_probe_tasks": 120},
    "real-small": {"n_comparisons": 3, "n_per_topic": 1, "n_off_target": 1, "max_probe_tasks": 40},
}
_OOD = OOD_PROFILES.get(os.environ.get("TA_PREFERENCE_PROFILE", "") or "simulated", {})
preference_profile()  # an unknown profile name fails at import, naming the known ones


def ood_file(name: str):
    """An OOD artifact under ``<storage>/ood``."""
    return storage_path("ood", name)


class OodSettings(dg.ConfigurableResource):
    """The OOD experiments: prompt set (empty = ``$TA_OOD_PROMPT_SET`` or the packaged default),
    targets per prompt, utility-matched comparisons per target, probe training size, and for the
    simulated judge the utility shift a prompt applies to its target topics."""

    prompt_set: str = ""
    n_per_topic: int = _OOD.get("n_per_topic", 4)
    n_off_target: int = _OOD.get("n_off_target", 4)
    n_comparisons: int = _OOD.get("n_comparisons", 50)
    max_probe_tasks: int = _OOD.get("max_probe_tasks", 400)
    max_prompt_tokens: int = 1024  # below the context of every feature model (tiny models: 2048)
    simulated_shift: float = 1.0
    n_permutations: int = 1000
    seed: int = 0

    def prompt_set_path(self) -> str:
        from ta_platform.preferences.ood import DEFAULT_PROMPT_SET

        return self.prompt_set or os.environ.get(PROMPT_SET_ENV, "") or str(DEFAULT_PROMPT_SET)


def _load_prompts(settings: OodSettings, pool: pd.DataFrame):
    from ta_platform.preferences.ood import load_prompt_set

    return load_prompt_set(settings.prompt_set_path(), pool["topic"].unique())


@dg.asset(group_name=GROUP, deps=[task_pool, pairwise_preferences, thurstonian_utilities], kinds={"duckdb", "parquet"})
def ood_prompt_set(context: dg.AssetExecutionContext, ood_settings: OodSettings,
                   preference_settings: PreferenceSettings, compute: ComputeResource,
                   metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """The validated system-prompt set; an invalid file (empty/duplicate prompt, unknown topic, a prompt
    over the context) fails naming the file and the prompt, and nothing is written."""
    from ta_platform.preferences.ood import check_prompt_lengths, prompt_frame
    from ta_platform.studies.ood_study import longest_input_tokens

    missing = [name for name in ("task_pool.parquet", "pairwise_preferences.parquet", "thurstonian_utilities.parquet")
               if not pref_file(name).exists()]
    if missing:
        raise FileNotFoundError(f"the OOD study reads the preference study's {missing} under {pref_file('')}: "
                                "`ta-platform materialize --study ood` builds them first (or materialise with "
                                "upstream in the UI), with the same TA_PREFERENCE_PROFILE")
    pool = pd.read_parquet(pref_file("task_pool.parquet"))
    prompts = _load_prompts(ood_settings, pool)
    model_key = judge_partition_key(compute.registry(), preference_settings).partition("/")[0]
    tokenizer = compute.load_tokenizer(compute.registry()[model_key])
    check_prompt_lengths(prompts, longest_input_tokens(tokenizer, pool), ood_settings.max_prompt_tokens,
                         ood_settings.prompt_set_path())
    frame = prompt_frame(prompts)
    write_parquet(frame, ood_file("prompt_set.parquet"), {"source": ood_settings.prompt_set_path(),
                                                          "code_version": code_version()})
    metadata_store.store().replace_slice("ood_prompts", frame)
    context.log.info(f"{len(prompts)} OOD prompts from {ood_settings.prompt_set_path()}")
    return dg.MaterializeResult(metadata={"n_prompts": len(prompts), "source": ood_settings.prompt_set_path(),
                                          "experiments": sorted(frame["experiment"].unique())})


@dg.asset(group_name=GROUP, deps=[ood_prompt_set, thurstonian_utilities, pairwise_preferences], pool=GPU_POOL,
          kinds={"pytorch", "parquet"})
def ood_behaviour(context: dg.AssetExecutionContext, ood_settings: OodSettings,
                  preference_settings: PreferenceSettings, compute: ComputeResource) -> dg.MaterializeResult:
    """Behavioural delta per (prompt, target task) against utility-matched comparison tasks, with the
    preference study's judge (the simulated one shifts its target topics; the real one reads logits)."""
    from ta_platform.preferences.judges import HFLogitJudge, SimulatedJudge
    from ta_platform.preferences.ood import behavioural_deltas, choose_targets, simulated_shift

    s = ood_settings
    pool = pd.read_parquet(pref_file("task_pool.parquet"))
    prompts = _load_prompts(s, pool)
    utilities = pd.read_parquet(pref_file("thurstonian_utilities.parquet"))
    mu = utilities.drop_duplicates("task_id").set_index("task_id")["mu"]
    targets = {p.prompt_id: choose_targets(pool, p, n_per_topic=s.n_per_topic, n_off_target=s.n_off_target,
                                           seed=s.seed) for p in prompts}
    judge_name = read_provenance(pref_file("pairwise_preferences.parquet")).get("judge")
    model_key = judge_partition_key(compute.registry(), preference_settings).partition("/")[0]
    if judge_name == "simulated":
        truth = pd.read_parquet(pref_file("planted_utilities.parquet"))
        shift = simulated_shift(prompts, dict(zip(pool["task_id"], pool["topic"], strict=True)), s.simulated_shift)
        base = SimulatedJudge(dict(zip(truth["task_id"], truth["mu"], strict=True)),
                              dict(zip(truth["task_id"], truth["sigma"], strict=True)), utility_shift=shift)
        deltas = behavioural_deltas(base.with_system_prompt, pool, mu, prompts, targets,
                                    n_comparisons=s.n_comparisons, log=context.log.info)
    else:
        with compute.loaded(compute.registry()[model_key], lm_head=True) as held:
            judge = HFLogitJudge(held.model, held.tokenizer)
            deltas = behavioural_deltas(judge.with_system_prompt, pool, mu, prompts, targets,
                                        n_comparisons=s.n_comparisons, log=context.log.info)
    write_parquet(deltas, ood_file("behaviour.parquet"), {"judge": f"{judge_name}:{model_key}",
                                                          "settings": s.model_dump(), "code_version": code_version()})
    return dg.MaterializeResult(metadata={"n_deltas": len(deltas), "judge": f"{judge_name}:{model_key}",
                                          "mean_abs_delta": float(deltas["behavioural_delta"].abs().mean())})


@dg.asset(group_name=GROUP, deps=[ood_behaviour, task_pool, thurstonian_utilities], pool=GPU_POOL,
          kinds={"pytorch", "scikitlearn"})
def ood_probe_deltas(context: dg.AssetExecutionContext, ood_settings: OodSettings,
                     preference_settings: PreferenceSettings, compute: ComputeResource) -> dg.MaterializeResult:
    """Probe delta (with minus without the system prompt) for the judge's activations, each random-weight
    control model's activations and the content baseline; one model resident at a time."""
    from ta_platform.preferences.ood import probe_deltas
    from ta_platform.studies.ood_study import (
        content_probe,
        feature_models,
        middle_layer,
        model_probe,
        probe_training_rows,
    )

    s = ood_settings
    pool = pd.read_parquet(pref_file("task_pool.parquet"))
    prompts = _load_prompts(s, pool)
    behaviour = pd.read_parquet(ood_file("behaviour.parquet"))
    targets = {pid: group["task_id"].tolist() for pid, group in behaviour.groupby("prompt_id", sort=False)}
    training = probe_training_rows(pool, pd.read_parquet(pref_file("thurstonian_utilities.parquet")),
                                   s.max_probe_tasks, s.seed)
    registry = compute.registry()
    judge_model = judge_partition_key(registry, preference_settings).partition("/")[0]
    frames = []
    for key in feature_models(registry, judge_model):
        with compute.loaded(registry[key]) as loaded:
            probe = model_probe(loaded, middle_layer(registry[key]), compute.token_budget_for(loaded), pool,
                                training, s.seed, context.log.info)
            frames.append(probe_deltas(probe.score, prompts, targets, probe.name))
    probe = content_probe(pool, training, s.seed)
    frames.append(probe_deltas(probe.score, prompts, targets, probe.name))
    deltas = pd.concat(frames, ignore_index=True)
    write_parquet(deltas, ood_file("probe_deltas.parquet"), {"n_training_tasks": len(training),
                                                             "code_version": code_version()})
    return dg.MaterializeResult(metadata={"feature_sets": sorted(deltas["features"].unique()),
                                          "n_training_tasks": len(training)})


@dg.asset(group_name=GROUP, deps=[ood_probe_deltas], kinds={"duckdb", "matplotlib"})
def ood_results(context: dg.AssetExecutionContext, ood_settings: OodSettings,
                metadata_store: MetadataStoreResource) -> dg.MaterializeResult:
    """Per experiment and feature set: Pearson/Spearman r of probe vs behavioural deltas, sign agreement
    (|behavioural delta| >= 0.02), seeded permutation p, n; a scatter PNG."""
    from ta_platform.preferences.ood import results_table, scatter_png

    behaviour = pd.read_parquet(ood_file("behaviour.parquet"))
    probes = pd.read_parquet(ood_file("probe_deltas.parquet"))
    deltas = probes.merge(behaviour, on=["experiment", "prompt_id", "task_id"], how="inner", validate="many_to_one")
    deltas = deltas[["experiment", "prompt_id", "task_id", "features", "behavioural_delta", "probe_delta",
                     "n_comparisons"]]
    results = results_table(deltas, n_permutations=ood_settings.n_permutations, seed=ood_settings.seed)
    store = metadata_store.store()
    store.replace_slice("ood_deltas", deltas)
    store.replace_slice("ood_results", results)
    judge = read_provenance(ood_file("behaviour.parquet")).get("judge")
    write_parquet(results, ood_file("ood_results.parquet"), {"judge": judge})
    png = scatter_png(deltas, results)
    atomic_write_bytes(storage_path("reports", "ood_scatter.png"), png)
    table = results.to_markdown(index=False, floatfmt=".3f")
    context.log.info(f"OOD results (judge {judge}):\n{table}")
    from ta_platform.defs import study_headlines, summary_metadata  # FLOAT keys (Plots tab), table schema

    return dg.MaterializeResult(metadata={
        **study_headlines.ood(results), **summary_metadata.duckdb_table_metadata(store, "ood_results"),
        "judge": judge, "table": dg.MetadataValue.md(table),
        "scatter": dg.MetadataValue.md(f"![OOD scatter](data:image/png;base64,{base64.b64encode(png).decode()})"),
        "html_report": dg.MetadataValue.path(str(storage_path("reports", "index.html"))),
    })
