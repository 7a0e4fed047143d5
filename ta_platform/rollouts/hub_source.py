"""Traces from a Hugging Face dataset repo (default ``uzaymacar/math-rollouts``) with the real client.

Why it is shaped this way:
- The repo holds ~29k files (~91 GB), mostly ``chunk_<i>/solutions.json``. Listing goes folder by
  folder (``<model>/<temperature>/<split>``, non-recursive) and only the three files a trace needs
  are downloaded, with ``hf_hub_download`` into the standard Hub cache layout.
- The revision (branch or tag) is resolved once to a commit hash and every download is pinned to it:
  a run sees one consistent snapshot, and files already cached for that commit are reused with no
  network call at all.
- ``chunk_<i>/solutions.json`` (the rollouts) are downloaded only by ``fetch_rollouts``, for the ONE
  trace the label verification reads: one listing of that trace's folder, then one file per chunk.
- Offline (``HF_HUB_OFFLINE=1``) or with the endpoint unreachable, the source falls back to what the
  cache already holds for the revision (the ``refs/<revision>`` file and the snapshot folder).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi, RepoFolder, hf_hub_download, is_offline_mode
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
)

from ta_platform.common.atomic import atomic_write_text
from ta_platform.common.faults import DataFault
from ta_platform.rollouts.layout import TEMPERATURE_DIR, TRACE_FILES, TraceRef, problem_id_from_dir, split_dir
from ta_platform.rollouts.parsing import MISSING_FILE
from ta_platform.rollouts.solutions import chunk_idx_from_dir, local_solution_files, solutions_relpath
from ta_platform.rollouts.source_base import (
    LocalRolloutSource,
    ProblemIds,
    check_splits,
    hf_cache_dir,
    normalize_problem_ids,
    sorted_refs,
)

logger = logging.getLogger(__name__)

DEFAULT_REPO_ID = "uzaymacar/math-rollouts"
REPO_TYPE = "dataset"
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
NOT_CACHED = "not_cached"


def network_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning "the Hub cannot be reached" (not "the Hub said no"), whichever HTTP stack is used."""
    errors: list[type[BaseException]] = [OfflineModeIsEnabled, ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module_name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def repo_cache_folder(cache_dir: Path, repo_id: str) -> Path:
    """The Hub cache folder of a dataset repo (``datasets--<owner>--<name>``)."""
    return cache_dir / "--".join([f"{REPO_TYPE}s", *repo_id.split("/")])


class HubRolloutSource:
    """A math-rollouts dataset repo on the Hub (or a Hub-compatible endpoint)."""

    def __init__(
        self,
        repo_id: str = DEFAULT_REPO_ID,
        revision: str = "main",
        cache_dir: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        token: str | bool | None = None,
        temperature_dir: str = TEMPERATURE_DIR,
    ):
        self.repo_id = repo_id
        self.revision = revision
        self.cache_dir = Path(cache_dir).expanduser().resolve() if cache_dir is not None else hf_cache_dir()
        # Read HF_ENDPOINT now, not at huggingface_hub import time, so a changed environment is honoured.
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
        self.token = token
        self.temperature_dir = temperature_dir
        self._commit: str | None = None
        self._offline = False
        self._api = HfApi(endpoint=self.endpoint, token=token)

    # --- revision -------------------------------------------------------------------------------
    @property
    def repo_cache(self) -> Path:
        return repo_cache_folder(self.cache_dir, self.repo_id)

    def _ref_file(self) -> Path:
        return self.repo_cache / "refs" / self.revision

    def _cached_commit(self) -> str | None:
        if COMMIT_HASH.match(self.revision):
            return self.revision
        ref_file = self._ref_file()
        return ref_file.read_text().strip() if ref_file.is_file() else None

    def resolved_revision(self) -> str:
        """The commit hash of ``revision``: asked once from the Hub, else read from the cache."""
        if self._commit is not None:
            return self._commit
        if is_offline_mode():
            self._offline = True
        elif COMMIT_HASH.match(self.revision):
            self._commit = self.revision
            return self._commit
        else:
            try:
                info = self._api.dataset_info(self.repo_id, revision=self.revision, token=self.token)
            except network_errors() as error:
                logger.warning("Hub unreachable (%s); using the cached snapshot of %s", error, self.revision)
                self._offline = True
            else:
                if not info.sha:
                    raise RuntimeError(f"the Hub returned no commit hash for {self.repo_id}@{self.revision}")
                self._commit = info.sha
                if not COMMIT_HASH.match(self.revision):
                    atomic_write_text(self._ref_file(), info.sha)
                return self._commit
        cached = self._cached_commit()
        if cached is None:
            raise RuntimeError(
                f"{self.repo_id}@{self.revision} cannot be resolved: the Hub is unreachable or offline mode "
                f"is on, and the cache {self.repo_cache} has no entry for this revision"
            )
        self._commit = cached
        return cached

    @property
    def snapshot_dir(self) -> Path:
        return self.repo_cache / "snapshots" / self.resolved_revision()

    # --- listing --------------------------------------------------------------------------------
    def _list_folder(self, path_in_repo: str | None, commit: str) -> list[str] | None:
        """Names of the sub-folders of one repo folder; None when the folder does not exist."""
        try:
            entries = list(
                self._api.list_repo_tree(
                    self.repo_id, path_in_repo=path_in_repo, revision=commit, repo_type=REPO_TYPE, token=self.token
                )
            )
        except EntryNotFoundError:
            return None
        except HfHubHTTPError as error:
            if error.response is not None and error.response.status_code == 404 and path_in_repo:
                return None
            raise
        return sorted(entry.path.rsplit("/", 1)[-1] for entry in entries if isinstance(entry, RepoFolder))

    def list_traces(
        self,
        models: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        problem_ids: ProblemIds = None,
    ) -> list[TraceRef]:
        """Trace folders of the requested models/splits/problems, listed one split folder at a time."""
        commit = self.resolved_revision()
        if self._offline:
            cached = LocalRolloutSource(self.snapshot_dir, self.temperature_dir)
            return cached.list_traces(models, splits, problem_ids) if cached.root.is_dir() else []
        wanted_ids = normalize_problem_ids(problem_ids)
        if models is None:
            models = self._list_folder(None, commit) or []
        refs = []
        for model in models:
            for split in check_splits(splits):
                names = self._list_folder(split_dir(model, split, self.temperature_dir), commit)
                for name in names or []:
                    problem_id = problem_id_from_dir(name)
                    if problem_id is not None and (wanted_ids is None or problem_id in wanted_ids):
                        refs.append(TraceRef(model, split, problem_id))
        return sorted_refs(refs)

    # --- download -------------------------------------------------------------------------------
    def fetch(self, ref: TraceRef) -> Path:
        """Download (or reuse from the cache) the three files of one trace; return their folder."""
        commit = self.resolved_revision()
        folder = None
        for name in TRACE_FILES:
            filename = f"{ref.relative_dir_for(self.temperature_dir)}/{name}"
            try:
                local = hf_hub_download(
                    self.repo_id,
                    filename,
                    repo_type=REPO_TYPE,
                    revision=commit,
                    cache_dir=self.cache_dir,
                    endpoint=self.endpoint,
                    token=self.token,
                )
            except RemoteEntryNotFoundError:
                raise DataFault(
                    f"{self.url_of(ref)}/{name}", f"required file {name} is missing on the Hub", kind=MISSING_FILE
                ) from None
            except LocalEntryNotFoundError:
                if not self._offline:
                    raise
                # A partly cached trace while offline: skip it like a broken one, the rest still loads.
                raise DataFault(
                    f"{self.url_of(ref)}/{name}", f"{name} is not in the cache and the Hub is unreachable",
                    kind=NOT_CACHED,
                ) from None
            folder = Path(local).parent
        assert folder is not None
        return folder

    def fetch_rollouts(self, ref: TraceRef) -> dict[int, Path]:
        """Download (or reuse from the cache) every ``chunk_<i>/solutions.json`` of ONE trace.

        Returns chunk index -> local file; chunks without the file are absent (the caller reports
        them). Offline, whatever the cache holds for the pinned commit is returned."""
        commit = self.resolved_revision()
        trace_dir = ref.relative_dir_for(self.temperature_dir)
        if self._offline:
            return local_solution_files(LocalRolloutSource(self.snapshot_dir, self.temperature_dir).folder_of(ref))
        chunk_ids = sorted(i for i in map(chunk_idx_from_dir, self._list_folder(trace_dir, commit) or []) if i is not None)
        files: dict[int, Path] = {}
        total_bytes = 0
        for n, idx in enumerate(chunk_ids, 1):
            try:
                local = hf_hub_download(self.repo_id, f"{trace_dir}/{solutions_relpath(idx)}", repo_type=REPO_TYPE,
                                        revision=commit, cache_dir=self.cache_dir, endpoint=self.endpoint,
                                        token=self.token)
            except RemoteEntryNotFoundError:
                logger.warning("%s/%s is missing on the Hub", self.url_of(ref), solutions_relpath(idx))
                continue
            files[idx] = Path(local)
            total_bytes += files[idx].stat().st_size
            if n % 20 == 0 or n == len(chunk_ids):
                logger.info("rollouts of %s: %d/%d chunk files, %.1f MB", ref.key, n, len(chunk_ids), total_bytes / 1e6)
        return files

    def url_of(self, ref: TraceRef) -> str:
        return f"hf://{self.repo_id}@{self.resolved_revision()}/{ref.relative_dir_for(self.temperature_dir)}"

    def locate(self, ref: TraceRef) -> str:
        return self.url_of(ref)

    def describe(self) -> str:
        where = self.endpoint or "default Hub endpoint"
        commit = f" -> {self._commit}" if self._commit else ""
        mode = " (offline: cache only)" if self._offline else ""
        return f"hf://{self.repo_id}@{self.revision}{commit} via {where}, cache {self.cache_dir}{mode}"
