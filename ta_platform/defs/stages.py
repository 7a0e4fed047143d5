"""A study's runs, in order: what ``ta-platform materialize`` executes (main job, or ``--study NAME``).

Why stages: Dagster runs assets of different partitions definitions in different runs (unpartitioned
data, model x layer activations, seed-partitioned probes, unpartitioned summaries). A ``Stage`` is one
such run: a job, and for partitioned jobs the keys it covers in ONE run (single-run backfill policy).

A study plugs into the platform with one ``StudyWiring`` in ``defs/<study>/__init__.py``, listed in
``defs/studies.py``: its asset and check modules (their checks feed the release gate), its jobs and its
stages. ``definitions.py`` appends every study's stages to the main job, before the gate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import dagster as dg

# (job, --seeds value or None) -> the partition keys the stage runs, first to last.
PartitionKeys = Callable[[dg.JobDefinition, "str | None"], Sequence[str]]


def all_partitions(job: dg.JobDefinition, seeds: str | None = None) -> list[str]:
    """Every partition key of the job's partitions definition."""
    return list(job.partitions_def.get_partition_keys())


def seed_range(default: Sequence[str]) -> PartitionKeys:
    """The ``--seeds first...last`` range, else ``default``: for seed-partitioned probe stages."""

    def keys(job: dg.JobDefinition, seeds: str | None = None) -> list[str]:
        if seeds:
            first, _, last = seeds.partition("...")
            return [first, last or first]
        return list(default)

    return keys


@dataclass(frozen=True)
class Stage:
    """One run of a study: a job, and for partitioned jobs the partition keys it covers."""

    name: str
    job_name: str
    partition_keys: PartitionKeys | None = None

    @property
    def partitioned(self) -> bool:
        return self.partition_keys is not None

    def partition_tags(self, job: dg.JobDefinition, seeds: str | None = None) -> dict[str, str]:
        if self.partition_keys is None:
            return {}
        keys = list(self.partition_keys(job, seeds))
        return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


@dataclass(frozen=True)
class StudyWiring:
    """What one study adds to the code location. ``resources``: resource key -> resource (new keys only)."""

    name: str
    asset_modules: tuple[ModuleType, ...]
    check_modules: tuple[ModuleType, ...]
    jobs: tuple[dg.JobDefinition | Any, ...]
    stages: tuple[Stage, ...]
    resources: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # Stages of other studies (by name) that ``--study NAME`` runs first, because this study's assets
    # depend on theirs: a study then builds from an empty storage. The main job runs them once, earlier.
    needs: tuple[str, ...] = ()
