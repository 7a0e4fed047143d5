"""The needle study in plain Python: dataset -> token labels -> token activations -> probes -> summary.

Each function is one asset's work (``defs/needle`` only parses config and records metadata). Files:
``<storage>/needle/datasets/<name>_<version>.jsonl``, ``labels/<name>_<version>/<model>.parquet``,
``activations/<model>/L<i>/`` (the shared partition layout and per-trace cache of the extraction
core), ``probes/<name>_<version>/<model>/probe_layer_<L>_seed_<S>.{npz,json}`` with the seed's test
predictions beside them (``..._test_tokens.parquet``, ``..._test_documents.parquet``: what the
summary's problem-group bootstrap resamples) and ``run_records/<name>_<version>_probe_run_record.json``;
metrics go to DuckDB ``needle_probe_metrics``.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ta_platform.common.atomic import atomic_path, atomic_write_json
from ta_platform.common.faults import FaultRecord
from ta_platform.common.hashing import code_version, sha256_file, stable_json_hash
from ta_platform.common.parquet_io import read_provenance, write_parquet
from ta_platform.extraction.extractor import TraceInput
from ta_platform.needle.dataset import (
    SOURCE_ENV,
    NeedleDatasetConfig,
    NeedleDocument,
    generate_documents,
    read_jsonl,
    write_jsonl,
)
from ta_platform.needle.evaluate import evaluate_slice, seed_slice
from ta_platform.needle.labels import TokenLabelConfig, token_labels
from ta_platform.needle.probe import NeedleProbeConfig
from ta_platform.needle.summary import SeedPredictions
from ta_platform.store.artifacts import needle_path

Log = Callable[[str], None]
METRIC_COLUMNS = ["model", "layer", "seed", "probe", "split", "metric", "value"]


def dataset_file(config: NeedleDatasetConfig) -> Path:
    return needle_path("datasets", config.file_name)


def labels_file(config: NeedleDatasetConfig, model_key: str) -> Path:
    return needle_path("labels", f"{config.dataset_name}_{config.dataset_version}", f"{model_key}.parquet")


def activations_root() -> Path:
    folder = needle_path("activations", ".keep").parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def probe_dir(config: NeedleDatasetConfig, model_key: str) -> Path:
    folder = needle_path("probes", f"{config.dataset_name}_{config.dataset_version}", model_key, ".keep").parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_record_file(config: NeedleDatasetConfig) -> Path:
    return needle_path("run_records", f"{config.dataset_name}_{config.dataset_version}_probe_run_record.json")


# --- dataset ---------------------------------------------------------------------------------------


def user_source(configured: str = "") -> str:
    """The user-supplied JSONL (the ``source`` setting, else ``TA_NEEDLE_SOURCE``); empty = generate."""
    return configured or os.environ.get(SOURCE_ENV, "")


def build_dataset(config: NeedleDatasetConfig, load_traces: Callable[[], Sequence[Any]], source: str = "",
                  ) -> tuple[Path, list[NeedleDocument], list[FaultRecord], dict[str, Any]]:
    """Generate the documents from the rollout traces, or read and validate the user's file.

    Either way the result is the dataset file under storage (the user's valid lines, copied) with a
    provenance sidecar; returns (path, documents, faults, provenance).
    """
    path = dataset_file(config)
    if source:
        docs, faults = read_jsonl(source)
        if not docs:
            raise ValueError(f"{source}: no valid needle document ({len(faults)} faulty line(s); first: "
                             f"{faults[0].path}: {faults[0].problem if faults else ''})")
        provenance = {"source": str(Path(source).resolve()), "source_sha256": sha256_file(source)}
    else:
        traces = load_traces()
        docs, faults = generate_documents(traces, config), []
        provenance = {"source": "generated", "traces": len(traces),
                      "traces_hash": stable_json_hash(sorted((t.key, t.files) for t in traces))}
    write_jsonl(path, docs)
    provenance.update(config=config.as_dict(), dataset_sha256=sha256_file(path), code_version=code_version(),
                      created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    atomic_write_json(path.with_suffix(".provenance.json"), provenance)
    return path, docs, faults, provenance


def load_dataset(config: NeedleDatasetConfig) -> list[NeedleDocument]:
    path = dataset_file(config)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: materialise needle_dataset first")
    docs, faults = read_jsonl(path)
    if faults:
        raise ValueError(f"{path}: the stored dataset has {len(faults)} invalid line(s), first {faults[0].path}: "
                         f"{faults[0].problem}; re-materialise needle_dataset")
    return docs


# --- token labels and activations ------------------------------------------------------------------


def build_labels(config: NeedleDatasetConfig, label_config: TokenLabelConfig, tokenizer: Any, model_key: str
                 ) -> tuple[Path, pd.DataFrame, list[FaultRecord]]:
    docs = load_dataset(config)
    frame, faults = token_labels(docs, tokenizer, label_config, stage=f"needle_labels:{model_key}")
    provenance = {"label_config": label_config.as_dict(), "dataset_sha256": sha256_file(dataset_file(config)),
                  "tokenizer": model_key, "code_version": code_version()}
    path = write_parquet(frame, labels_file(config, model_key), provenance)
    return path, frame, faults


def read_labels(config: NeedleDatasetConfig, model_key: str) -> tuple[pd.DataFrame, TokenLabelConfig, dict]:
    path = labels_file(config, model_key)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: materialise needle_token_labels first")
    provenance = read_provenance(path)
    raw = dict(provenance["label_config"])
    raw["seeds"] = tuple(raw["seeds"])
    return pd.read_parquet(path), TokenLabelConfig(**raw), provenance


def token_trace_inputs(docs: Sequence[NeedleDocument], labels: pd.DataFrame) -> list[TraceInput]:
    """One input per document: its text and the positions whose activations are stored."""
    stored = labels[labels["stored"]]
    positions = {doc_id: group["position"].astype(int).tolist() for doc_id, group in stored.groupby("doc_id")}
    return [TraceInput(key=d.doc_id, text=d.text, token_positions=positions[d.doc_id],
                       meta={"split": d.split, "group": d.group})
            for d in docs if d.doc_id in positions]


# --- probes ----------------------------------------------------------------------------------------


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def run_seed(seed: int, model_key: str, layer: int, config: NeedleDatasetConfig, probe_config: NeedleProbeConfig,
             log: Log = print) -> tuple[pd.DataFrame, Path]:
    """Probes of one (model, layer) for one seed: weights + metadata JSON, and the metric rows."""
    from ta_platform.extraction.registry import layer_key
    from ta_platform.extraction.store import load_partition, partition_folder

    labels, label_config, label_provenance = read_labels(config, model_key)
    partition = load_partition(partition_folder(activations_root(), model_key, layer_key(layer)))
    frame, X = seed_slice(labels, partition, partition.index, seed, label_config)
    started = time.monotonic()
    result = evaluate_slice(frame, X, seed, probe_config)
    folder = probe_dir(config, model_key)
    stem = f"probe_layer_{layer}_seed_{seed}"
    with atomic_path(folder / f"{stem}.npz") as tmp:
        tmp.write_bytes(_npz_bytes(result.weights))
    metadata = {
        **result.metadata, "model": model_key, "layer": layer, "seed": seed,
        "weights_file": f"{stem}.npz", "weights_sha256": sha256_file(folder / f"{stem}.npz"),
        "config": {"dataset": config.as_dict(), "labels": label_config.as_dict(), "probe": probe_config.as_dict()},
        "provenance": {"dataset_sha256": label_provenance.get("dataset_sha256"),
                       "labels_sha256": sha256_file(labels_file(config, model_key)),
                       "activations_fingerprint": partition.manifest.get("fingerprint"),
                       "model_id": partition.manifest.get("model_id"), "revision": partition.manifest.get("revision"),
                       "code_version": code_version(),
                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    prediction_provenance = {"model": model_key, "layer": layer, "seed": seed, **metadata["provenance"]}
    for kind, frame_out in (("tokens", result.predictions), ("documents", result.documents)):
        if frame_out is not None:
            write_parquet(frame_out, folder / f"{stem}_test_{kind}.parquet", prediction_provenance)
    metadata["test_predictions"] = {"tokens": f"{stem}_test_tokens.parquet", "documents": f"{stem}_test_documents.parquet"}
    meta_path = atomic_write_json(folder / f"{stem}.json", metadata)
    metrics = result.metrics.assign(model=model_key, layer=layer, seed=seed)[METRIC_COLUMNS]
    test_auc = metrics.query("probe == 'linear_probe' and split == 'test' and metric == 'auroc'")["value"].iloc[0]
    log(f"{model_key}/L{layer} seed {seed}: {len(frame)} tokens, L2 {metadata['selected_l2']:g}, val AUROC "
        f"{metadata['val_metrics']['auroc']:.3f}, test AUROC {test_auc:.3f} ({time.monotonic() - started:.1f}s)")
    return metrics, meta_path


def write_run_record(config: NeedleDatasetConfig, probe_config: NeedleProbeConfig, seeds: Iterable[int],
                     slices: Iterable[str], metadata_files: Iterable[Path], run_id: str) -> Path:
    files = sorted(str(p) for p in metadata_files)
    record = {"run_id": run_id, "seeds": sorted(seeds), "slices": sorted(slices),
              "config": {"dataset": config.as_dict(), "probe": probe_config.as_dict()},
              "inputs": {"dataset_sha256": sha256_file(dataset_file(config)),
                         "labels": {p.stem: sha256_file(p) for p in sorted(labels_file(config, "x").parent.glob("*.parquet"))}},
              "outputs": files, "code_version": code_version(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return atomic_write_json(run_record_file(config), record)


def metadata_files(config: NeedleDatasetConfig) -> list[Path]:
    root = needle_path("probes", f"{config.dataset_name}_{config.dataset_version}", ".keep").parent
    return sorted(root.glob("*/probe_layer_*_seed_*.json")) if root.is_dir() else []


def read_predictions(config: NeedleDatasetConfig, model_key: str, layer: int, seeds: Iterable[int]
                     ) -> list[SeedPredictions]:
    """The stored test predictions of each seed of one (model, layer); a missing file is an error naming it."""
    folder = needle_path("probes", f"{config.dataset_name}_{config.dataset_version}", model_key)
    out = []
    for seed in sorted(set(seeds)):
        stem = folder / f"probe_layer_{layer}_seed_{seed}"
        paths = [Path(f"{stem}_test_{kind}.parquet") for kind in ("tokens", "documents")]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{missing[0]} does not exist (seed {seed} has metrics but no stored test "
                                    "predictions, written by an older version): re-materialise needle_probes")
        out.append(SeedPredictions(seed, pd.read_parquet(paths[0]), pd.read_parquet(paths[1])))
    return out


def summary_predictions(config: NeedleDatasetConfig, metrics: pd.DataFrame
                        ) -> dict[tuple[str, int], list[SeedPredictions]]:
    """(model, layer) -> the test predictions of every seed that ``metrics`` (needle_probe_metrics) holds."""
    seeds_of = metrics.groupby(["model", "layer"])["seed"].unique()
    return {(str(model), int(layer)): read_predictions(config, str(model), int(layer), [int(s) for s in seeds])
            for (model, layer), seeds in seeds_of.items()}


def read_metadata(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def stored_slices(registry: dict[str, Any]) -> list[tuple[str, int]]:
    """(model, layer) of every stored needle activation partition of the registry's models, at its layers."""
    from ta_platform.extraction.registry import layer_key
    from ta_platform.extraction.store import MANIFEST_FILE, partition_folder

    return [(model_key, layer) for model_key, spec in sorted(registry.items()) for layer in spec.layer_indices()
            if (partition_folder(activations_root(), model_key, layer_key(layer)) / MANIFEST_FILE).is_file()]
