"""The needle study's settings resource: every knob of the dataset, labels and probes (stored as provenance)."""

from __future__ import annotations

import dagster as dg

from ta_platform.needle.dataset import NeedleDatasetConfig
from ta_platform.needle.labels import ALL, TokenLabelConfig
from ta_platform.needle.probe import NeedleProbeConfig


class NeedleSettings(dg.ConfigurableResource):
    """``source``: a user JSONL replacing the generator (empty: ``TA_NEEDLE_SOURCE``, else generate).
    ``negatives_per_doc``: an integer or "all". ``label_seeds``: probe seeds whose negatives are stored
    (a probe seed outside them is refused with a clear error). ``class_balance``: weighted or downsample.
    ``blas_threads``: BLAS threads while fitting (small fits: more threads only contend on a shared CPU)."""

    source: str = ""
    dataset_name: str = "needle_rollouts"
    dataset_version: str = "v1"
    dataset_seed: int = 0
    docs_per_trace: int = 2
    window_chars: int = 420
    needle_rate: float = 0.5
    max_traces: int = 0
    negatives_per_doc: str = "16"
    label_seeds: list[int] = [0, 1, 2, 3, 4]
    l2_grid: list[float] = [100.0, 10.0, 1.0, 0.1]
    class_balance: str = "weighted"
    max_train_docs: int = 0
    max_val_docs: int = 0
    max_train_tokens: int = 0
    max_val_tokens: int = 0
    bootstrap_resamples: int = 200  # per-seed intervals (problem groups resampled)
    summary_resamples: int = 1000  # the summary's across-seed intervals (problem groups resampled)
    monitor_top_k: int = 5
    blas_threads: int = 1

    def dataset_config(self) -> NeedleDatasetConfig:
        return NeedleDatasetConfig(dataset_name=self.dataset_name, dataset_version=self.dataset_version,
                                   seed=self.dataset_seed, docs_per_trace=self.docs_per_trace,
                                   window_chars=self.window_chars, needle_rate=self.needle_rate,
                                   max_traces=self.max_traces)

    def label_config(self) -> TokenLabelConfig:
        k = self.negatives_per_doc.strip()
        return TokenLabelConfig(negatives_per_doc=ALL if k == ALL else int(k), seeds=tuple(self.label_seeds))

    def probe_config(self) -> NeedleProbeConfig:
        return NeedleProbeConfig(l2_grid=tuple(self.l2_grid), class_balance=self.class_balance,
                                 max_train_docs=self.max_train_docs, max_val_docs=self.max_val_docs,
                                 max_train_tokens=self.max_train_tokens, max_val_tokens=self.max_val_tokens,
                                 bootstrap_resamples=self.bootstrap_resamples, monitor_top_k=self.monitor_top_k)
