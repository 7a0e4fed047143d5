"""Backtracking lag study, plain orchestration: source -> chains -> token labels -> activations ->
the seed's recorded split -> lag probes per seed -> tripwires -> across-seed margin intervals.
The science is in ``ta_platform.chains``; this module only moves tables between it, the extraction
core and the files under ``<storage>/backtracking``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ta_platform.chains.lag_probes import LagConfig, run_lag_slice
from ta_platform.chains.records import EMBEDDED, ChainTable, build_chain_table, chains_source, read_records
from ta_platform.chains.splits import UNIT, DatasetSplit, dataset_split
from ta_platform.chains.synthetic import generate_chains
from ta_platform.chains.token_labels import token_label_table
from ta_platform.common.parquet_io import read_provenance  # noqa: F401 (re-exported for the checks)
from ta_platform.common.paths import storage_dir, storage_path
from ta_platform.extraction.extractor import TraceInput
from ta_platform.extraction.registry import layer_key
from ta_platform.extraction.store import PartitionRows, load_partition, partition_folder

Log = Callable[[str], None]
EMBEDDED_CHAINS = 32  # the main job's budget: ~32 chains of ~150 tokens read by three models
CHAINS_FILE = "chains.parquet"
TOKENS_FILE = "token_labels.parquet"


def backtracking_file(name: str) -> Path:
    return storage_path("backtracking", name)


def activations_root() -> Path:
    """Token activations: ``<storage>/backtracking/activations/<model>/L<i>/`` + each model's cache."""
    return storage_dir("backtracking", "activations")


def load_chains(spec: str | None = None, *, embedded_chains: int = EMBEDDED_CHAINS, seed: int = 0) -> tuple[ChainTable, str]:
    """The chains table of the configured source and the source's name (for provenance)."""
    source = chains_source(spec)
    records = generate_chains(embedded_chains, seed) if source == EMBEDDED else read_records(source)
    return build_chain_table(records, source=source), source


def chain_trace_inputs(chains: pd.DataFrame, tokens: pd.DataFrame) -> list[TraceInput]:
    """One input per chain: the chain text and the positions of its labelled tokens (one row each)."""
    positions = {key: group["position"].tolist() for key, group in tokens.groupby("chain_id", sort=False)}
    return [TraceInput(key=row.chain_id, text=row.text, token_positions=positions[row.chain_id])
            for row in chains.itertuples() if row.chain_id in positions]


def tokens_of_model(tokens: pd.DataFrame, model_key: str) -> pd.DataFrame:
    rows = tokens[tokens["model"] == model_key].drop(columns=["model"])
    if rows.empty:
        raise ValueError(f"no token labels for model {model_key!r}: re-materialise backtracking_token_labels")
    return rows.reset_index(drop=True)


def label_tokens(chains: pd.DataFrame, tokenizers: Mapping[str, object]) -> pd.DataFrame:
    """Token labels for every model's tokenizer (``model`` column first)."""
    frames = [token_label_table(chains, tokenizer).assign(model=key) for key, tokenizer in tokenizers.items()]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["model", *[c for c in frame.columns if c != "model"]]]


@dataclass
class Slice:
    model_key: str
    layer: int
    tokens: pd.DataFrame  # rows aligned with X
    X: PartitionRows  # the partition's rows in token order, read on demand (never a copy of the layer)
    fingerprint: str


def load_slice(model_key: str, layer: int, tokens: pd.DataFrame, root: Path | None = None) -> Slice:
    """A partition's activations joined to the model's token labels (chains skipped by extraction drop out)."""
    partition = load_partition(partition_folder(root or activations_root(), model_key, layer_key(layer)))
    index = partition.index[["trace_key", "chunk_idx"]].rename(columns={"trace_key": "chain_id", "chunk_idx": "position"})
    index["row"] = np.arange(len(index))
    joined = tokens.merge(index, on=["chain_id", "position"], how="inner", validate="one_to_one")
    complete = joined.groupby("chain_id")["token_idx"].transform("size") == joined["n_tokens"]
    joined = joined[complete].sort_values(["chain_id", "token_idx"], kind="stable").reset_index(drop=True)
    return Slice(model_key, layer, joined.drop(columns=["row"]), PartitionRows(partition, joined["row"].to_numpy()),
                 str(partition.manifest.get("fingerprint")))


def iter_slices(partition_keys: Sequence[tuple[str, int]], tokens: pd.DataFrame) -> Iterator[Slice]:
    for model_key, layer in partition_keys:
        yield load_slice(model_key, layer, tokens_of_model(tokens, model_key))


def split_table(chains: pd.DataFrame, seed: int, config: LagConfig) -> pd.DataFrame:
    """Rows of table ``backtracking_splits`` for ``seed``: every chain of the chains table, by problem."""
    return dataset_split(chains, seed, config.fractions).table()


@dataclass
class SeedResult:
    metrics: pd.DataFrame  # rows of backtracking_probe_metrics
    margins: pd.DataFrame  # rows of backtracking_probe_margins (per-seed points)
    test_scores: pd.DataFrame  # every slice's test rows (model, layer, seed + lag_probes.SCORE_COLUMNS)
    provenance: dict


def run_seed(split: DatasetSplit, slices: Iterator[Slice], config: LagConfig, log: Log = print) -> SeedResult:
    """Lag probes of every slice on the seed's ONE recorded split (``split``, read from
    ``backtracking_splits``): a slice that lost chains keeps every other chain's split."""
    seed = split.seed
    metrics, margins, scores = [], [], []
    provenance = {"seed": seed, "config": config.as_dict(), "split_unit": UNIT, "slices": {}}
    for piece in slices:
        result = run_lag_slice(piece.tokens, piece.X, split, config)
        where = {"model": piece.model_key, "layer": layer_key(piece.layer), "seed": seed}
        metrics.append(result.metrics.assign(**where))
        margins.append(result.margins.assign(**where))
        scores.append(result.test_scores.assign(**where))
        provenance["slices"][f"{piece.model_key}/{layer_key(piece.layer)}"] = {
            "activation_fingerprint": piece.fingerprint, "n_rows": len(piece.tokens), "split": result.split}
        probe = result.metrics[(result.metrics["probe"] == "linear_probe") & (result.metrics["metric"] == "auroc")]
        log(f"seed {seed} {piece.model_key}/{layer_key(piece.layer)}: {len(piece.tokens)} tokens; probe AUROC by lag "
            + ", ".join(f"{int(r.lag):+d}: {r.value:.3f}" for r in probe.itertuples()))
    return SeedResult(pd.concat(metrics, ignore_index=True), pd.concat(margins, ignore_index=True),
                      pd.concat(scores, ignore_index=True), provenance)


def metric_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows of table ``backtracking_probe_metrics``: model, layer, lag, probe, metric, value, seed."""
    return metrics[["model", "layer", "lag", "probe", "metric", "value", "seed"]].astype(
        {"lag": "int64", "seed": "int64", "value": "float64"})


def write_run_record(seed: int, provenance: dict) -> Path:
    from ta_platform.common.atomic import atomic_write_json

    path = storage_path("backtracking", "probes", f"seed_{seed}.json")
    atomic_write_json(path, json.loads(json.dumps(provenance, default=str)))
    return path


def margin_table(margins: pd.DataFrame) -> pd.DataFrame:
    """Rows of table ``backtracking_probe_margins`` (per-seed point margins; the interval is across seeds)."""
    columns = ["model", "layer", "lag", "target", "baseline", "metric", "margin", "chosen", "seed"]
    return margins[columns].astype({"lag": "int64", "seed": "int64", "margin": "float64"})


def test_scores_path(seed: int) -> Path:
    return storage_path("backtracking", "probes", f"test_scores_seed_{seed}.parquet")


def write_test_scores(result: SeedResult) -> Path:
    """The seed's test rows (what the across-seed interval resamples), with the run record as provenance."""
    from ta_platform.common.parquet_io import write_parquet

    seed = result.provenance["seed"]
    return write_parquet(result.test_scores, test_scores_path(seed),
                         provenance=json.loads(json.dumps(result.provenance, default=str)))


def read_test_scores(seeds: Sequence[int]) -> pd.DataFrame:
    """The stored test rows of ``seeds``; a clear error naming a seed whose file is missing."""
    missing = [seed for seed in seeds if not test_scores_path(seed).is_file()]
    if missing:
        raise FileNotFoundError(f"no stored test scores for seed(s) {missing} ({test_scores_path(missing[0])}): "
                                "re-materialise backtracking_lag_probes for them")
    return pd.concat([pd.read_parquet(test_scores_path(seed)) for seed in seeds], ignore_index=True)


def margin_summary_table(margins: pd.DataFrame, config: LagConfig) -> pd.DataFrame:
    """Rows of table ``backtracking_margin_summary``: the seed-averaged margins of every seed in
    ``margins`` (rows of ``backtracking_probe_margins``) with chain-problem bootstrap intervals."""
    from ta_platform.chains.intervals import margin_summary

    if margins.empty:
        raise ValueError("backtracking_probe_margins is empty: materialise backtracking_lag_probes first")
    seeds = sorted(int(seed) for seed in margins["seed"].unique())
    return margin_summary(read_test_scores(seeds), margins, n_resamples=config.bootstrap_resamples,
                          level=config.ci_level)


def deepest_slices(slices: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Each model's deepest configured layer: where the tripwires run (once per dataset, not per layer)."""
    deepest: dict[str, int] = {}
    for model_key, layer in slices:
        deepest[model_key] = max(layer, deepest.get(model_key, layer))
    return sorted(deepest.items())


def run_tripwires(slices: Sequence[tuple[str, int]], tokens: pd.DataFrame, config: LagConfig, seed: int,
                  log: Log = print) -> pd.DataFrame:
    """Rows of ``backtracking_tripwire_results`` for the deepest layer of every model (lag 0)."""
    from ta_platform.chains.tripwires import probe_tripwires

    rows = []
    for piece in iter_slices(deepest_slices(slices), tokens):
        scope = f"{piece.model_key}/{layer_key(piece.layer)}"
        for result in probe_tripwires(piece.tokens, piece.X, seed, config):
            rows.append({**result.as_row(scope), "metrics": json.dumps(result.metrics, default=str)})
            log(f"tripwire {result.name} on {scope}: {'pass' if result.passed else result.reason_code} {result.detail}")
    return pd.DataFrame(rows, columns=["tripwire", "scope", "passed", "reason_code", "detail", "metrics"])


def split_assignments(records: Sequence[dict], recorded: pd.DataFrame, chains: pd.DataFrame) -> pd.DataFrame:
    """(seed, scope, chain_id, unit_id, chain_key, split) of the recorded split (scope ``recorded``,
    rows of ``backtracking_splits``) and of every slice's split as its run record says it was used;
    ``unit_id`` is the chain's problem unit (from the recorded split), ``chain_key`` its content hash."""
    key_of = dict(zip(chains["chain_id"].astype(str), chains["content_hash"], strict=True))
    unit_of = {(int(r.seed), str(r.chain_id)): str(r.unit_id) for r in recorded.itertuples()}
    rows = [(int(r.seed), "recorded", str(r.chain_id), str(r.unit_id), key_of.get(str(r.chain_id), str(r.chain_id)),
             str(r.split)) for r in recorded.itertuples()]
    rows += [(int(record["seed"]), scope, chain, unit_of.get((int(record["seed"]), chain), ""), key_of.get(chain, chain),
              split) for record in records for scope, piece in record["slices"].items()
             for chain, split in piece["split"].items()]
    return pd.DataFrame(rows, columns=["seed", "scope", "chain_id", "unit_id", "chain_key", "split"])


def read_run_records() -> list[dict]:
    folder = storage_path("backtracking", "probes", "x").parent
    return [json.loads(path.read_text()) for path in sorted(folder.glob("seed_*.json"))] if folder.exists() else []


@dataclass
class ModelReport:
    markdown: str
    png_path: Path
    png_markdown: str
    beats_baselines_span: list  # "<layer> <lag>" cells beating every baseline that applies (report.beats_baselines)
    beats_baselines_onset: list

    # The old names, still read by the summary asset's metadata keys (``<model>_beats_both_*``): they now
    # hold the cells beating EVERY applicable baseline, not just token identity and persistence.
    @property
    def beats_both_span(self) -> list:
        return self.beats_baselines_span

    @property
    def beats_both_onset(self) -> list:
        return self.beats_baselines_onset


@dataclass
class Reports:
    markdown_path: Path
    models: dict[str, ModelReport]


def write_reports(metric_summary: pd.DataFrame, margin_summary: pd.DataFrame) -> Reports:
    """``storage/reports/backtracking_<model>.png`` per model and ``backtracking_summary.md``."""
    import base64

    from ta_platform.chains.intervals import STATISTIC
    from ta_platform.chains.report import beats_baselines, heatmap_png, layer_lag_table, markdown_table
    from ta_platform.common.atomic import atomic_write_bytes, atomic_write_text

    if metric_summary.empty:
        raise ValueError("backtracking_metric_summary is empty: materialise backtracking_lag_probes first")
    n_seeds = int(margin_summary["n_seeds"].max()) if len(margin_summary) else 0
    models, sections = {}, ["# Backtracking lag study\n",
                            "Lag convention: the probe reads the activation at token t and predicts the label at "
                            "t + k; k > 0 is the future. Metrics on test chains, mean over seeds (each seed is "
                            "another split of the same chains; the metric columns carry no interval). "
                            f"Margins (`span_vs_<baseline>`, `onset_vs_<baseline>`): {STATISTIC}; the resampled "
                            f"unit is the chain problem (the unit the split keeps together), {n_seeds} seed(s). "
                            "A cell beats the baselines when the interval is above 0 over every baseline that "
                            "applies at its lag (token identity, position; also persistence and the lag-0 probe "
                            "at k != 0).\n"]
    for model in sorted(metric_summary["model"].unique()):
        table = layer_lag_table(metric_summary, margin_summary, model)
        png = heatmap_png(table, model)
        path = atomic_write_bytes(storage_path("reports", f"backtracking_{model}.png"), png)
        cells = {target: [f"{r.layer} {r.lag:+d}" for r in beats_baselines(table, target).itertuples()]
                 for target in ("span", "onset")}
        markdown = markdown_table(table)
        sections += [f"## {model}\n", markdown, "",
                     f"Probe beats every baseline that applies (chain-problem interval above 0), span: "
                     f"{cells['span'] or 'none'}; onset: {cells['onset'] or 'none'}\n", f"![{model}]({path.name})\n"]
        models[model] = ModelReport(markdown, path, f"![{model}](data:image/png;base64,{base64.b64encode(png).decode()})",
                                    cells["span"], cells["onset"])
    report = atomic_write_text(storage_path("reports", "backtracking_summary.md"), "\n".join(sections))
    return Reports(report, models)
