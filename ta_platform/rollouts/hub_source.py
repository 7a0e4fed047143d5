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
- A flaky Hub: every request goes through ``http_retry.call_with_retry`` (backoff, a bounded total
  time). Every file handed out is checked against the ETag the Hub gave it (the sha256 of an LFS file,
  the git blob sha1 of a regular one), whether it was just downloaded or found in the cache; a file
  that fails the check is removed from the cache (blob and pointer) and downloaded again. After a
  permanent failure, ``HubUnavailableError`` names the file and nothing partial stays in the cache.
- Two layouts: the folder layout (files under ``<model>/<temperature>/<split>/problem_<ID>/``) and the
  August 2025 re-publication as Parquet shards under ``data/`` with one row per file
  (``hub_parquet.ParquetRows``). ``layout()`` says which the commit has; folder files are used where
  they exist, the Parquet rows otherwise.
"""

from __future__ import annotations

import hashlib
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
from ta_platform.common.hashing import sha256_file
from ta_platform.rollouts.http_retry import (
    HubUnavailableError,
    IntegrityError,
    RetryPolicy,
    call_with_retry,
    transport_errors,
)
from ta_platform.rollouts.hub_parquet import DATA_DIR, ParquetRows
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
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
NOT_CACHED = "not_cached"
FOLDER_LAYOUT, PARQUET_LAYOUT, BOTH_LAYOUTS = "folder", "parquet", "folder+parquet"


def network_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning "the Hub cannot be reached" (not "the Hub said no"), whichever HTTP stack is used."""
    return (OfflineModeIsEnabled, HubUnavailableError, *transport_errors())


def git_blob_sha1_file(path: Path) -> str:
    """The git object id of a file (the ETag the Hub gives a regular, non-LFS file)."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_download(local: Path, what: str) -> None:
    """Check a cached file against its ETag (its blob's name): sha256 for LFS files, git sha1 otherwise.

    ``IntegrityError`` (retried: the caller removes the file and downloads it again) names the file.
    An ETag of another form (a server that gives none usable) is not checked.
    """
    blob = Path(local).resolve()
    etag = blob.name
    if SHA256_HEX.match(etag):
        actual, kind = sha256_file(blob), "sha256"
    elif COMMIT_HASH.match(etag):
        actual, kind = git_blob_sha1_file(blob), "git sha1"
    else:
        return
    if actual != etag:
        raise IntegrityError(f"{what}: {kind} of the {blob.stat().st_size}-byte download is {actual[:12]}..., "
                             f"the Hub announced {etag[:12]}... (corrupt body or cache)")


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
        retry: RetryPolicy | None = None,
    ):
        self.repo_id = repo_id
        self.revision = revision
        self.cache_dir = Path(cache_dir).expanduser().resolve() if cache_dir is not None else hf_cache_dir()
        # Read HF_ENDPOINT now, not at huggingface_hub import time, so a changed environment is honoured.
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
        self.token = token
        self.temperature_dir = temperature_dir
        self.retry = retry or RetryPolicy.from_env()
        self._commit: str | None = None
        self._offline = False
        self._layout: str | None = None
        self._parquet: ParquetRows | None = None
        self._listed: list[TraceRef] = []  # the last listing: its rows are read together, each row group once
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
                info = call_with_retry(
                    lambda: self._api.dataset_info(self.repo_id, revision=self.revision, token=self.token),
                    f"hf://{self.repo_id}@{self.revision} (revision)", self.retry)
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
    def _list_entries(self, path_in_repo: str | None, commit: str, recursive: bool = False) -> list | None:
        """The entries of one repo folder (retried as a whole); None when the folder does not exist."""
        def listing() -> list:
            return list(self._api.list_repo_tree(self.repo_id, path_in_repo=path_in_repo, recursive=recursive,
                                                 revision=commit, repo_type=REPO_TYPE, token=self.token))

        try:
            return call_with_retry(listing, f"hf://{self.repo_id}@{commit}/{path_in_repo or ''} (listing)", self.retry)
        except EntryNotFoundError:
            return None
        except HfHubHTTPError as error:
            if error.response is not None and error.response.status_code == 404 and path_in_repo:
                return None
            raise

    def _list_folder(self, path_in_repo: str | None, commit: str) -> list[str] | None:
        """Names of the sub-folders of one repo folder; None when the folder does not exist."""
        entries = self._list_entries(path_in_repo, commit)
        if entries is None:
            return None
        return sorted(entry.path.rsplit("/", 1)[-1] for entry in entries if isinstance(entry, RepoFolder))

    # --- layout ---------------------------------------------------------------------------------
    @property
    def parquet(self) -> ParquetRows:
        """The Parquet rows of the pinned commit (index and extracted files cached under the repo cache)."""
        if self._parquet is None:
            commit = self.resolved_revision()
            self._parquet = ParquetRows(self.repo_id, commit, self.repo_cache, self.endpoint, self.token, self.retry,
                                        lambda path, recursive: self._list_entries(path, commit, recursive))
        return self._parquet

    def layout(self) -> str:
        """``folder``, ``parquet`` or ``folder+parquet``: which layouts the pinned commit holds.

        Model folders at the repo root mean the folder layout; ``data/*.parquet`` the Parquet one.
        Offline, what the cache holds decides (folder files first)."""
        if self._layout is not None:
            return self._layout
        commit = self.resolved_revision()
        if self._offline:
            parquet_cached = self.parquet.files_root.is_dir() and not self.snapshot_dir.is_dir()
            self._layout = PARQUET_LAYOUT if parquet_cached else FOLDER_LAYOUT
            return self._layout
        folders = self._list_folder(None, commit) or []
        has_folders = any(name != DATA_DIR and not name.startswith(".") for name in folders)
        has_parquet = DATA_DIR in folders and bool(self.parquet.shards())
        self._layout = BOTH_LAYOUTS if has_folders and has_parquet else PARQUET_LAYOUT if has_parquet else FOLDER_LAYOUT
        return self._layout

    def _uses_folders(self) -> bool:
        return self.layout() != PARQUET_LAYOUT

    def _uses_parquet(self) -> bool:
        return self.layout() != FOLDER_LAYOUT

    def list_traces(
        self,
        models: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        problem_ids: ProblemIds = None,
    ) -> list[TraceRef]:
        """Trace folders of the requested models/splits/problems, listed one split folder at a time."""
        commit = self.resolved_revision()
        if self._offline:
            root = self.parquet.files_root if self.layout() == PARQUET_LAYOUT else self.snapshot_dir
            cached = LocalRolloutSource(root, self.temperature_dir)
            return cached.list_traces(models, splits, problem_ids) if cached.root.is_dir() else []
        wanted_ids = normalize_problem_ids(problem_ids)
        refs = []
        if self._uses_parquet():
            refs += self._parquet_refs(models, check_splits(splits), wanted_ids)
            self._listed = sorted_refs(refs)
        if self._uses_folders():
            folder_models = models if models is not None else [
                m for m in self._list_folder(None, commit) or [] if m != DATA_DIR]
            for model in folder_models:
                for split in check_splits(splits):
                    names = self._list_folder(split_dir(model, split, self.temperature_dir), commit)
                    for name in names or []:
                        problem_id = problem_id_from_dir(name)
                        if problem_id is not None and (wanted_ids is None or problem_id in wanted_ids):
                            refs.append(TraceRef(model, split, problem_id))
        return sorted_refs(refs)

    def _parquet_refs(self, models, splits, wanted_ids) -> list[TraceRef]:
        """Traces named by the ``path`` column: ``<model>/<temperature>/<split>/problem_<ID>/<file>``."""
        refs = []
        for path in self.parquet.paths():
            parts = path.split("/")
            if len(parts) < 5 or parts[1] != self.temperature_dir or parts[2] not in splits:
                continue
            problem_id = problem_id_from_dir(parts[3])
            if problem_id is None or (models is not None and parts[0] not in models):
                continue
            if wanted_ids is None or problem_id in wanted_ids:
                refs.append(TraceRef(parts[0], parts[2], problem_id))
        return refs

    # --- download -------------------------------------------------------------------------------
    def _download(self, filename: str, commit: str) -> Path:
        """One file of the pinned commit, verified against its ETag; retried; nothing corrupt left cached."""
        what = f"hf://{self.repo_id}@{commit}/{filename}"

        def attempt() -> Path:
            local = Path(hf_hub_download(self.repo_id, filename, repo_type=REPO_TYPE, revision=commit,
                                         cache_dir=self.cache_dir, endpoint=self.endpoint, token=self.token))
            verify_download(local, what)
            return local

        def discard(error: BaseException) -> None:
            if isinstance(error, IntegrityError):
                pointer = self.repo_cache / "snapshots" / commit / filename
                for path in {pointer.resolve(), pointer}:
                    path.unlink(missing_ok=True)
                logger.warning("removed the corrupt cached copy of %s", what)

        policy = RetryPolicy(attempts=1) if self._offline else self.retry
        return call_with_retry(attempt, what, policy, on_failure=discard)

    def fetch(self, ref: TraceRef) -> Path:
        """Download (or reuse from the cache) the three files of one trace; return their folder.

        Folder files where the commit has them, else the Parquet rows of the re-published layout."""
        commit = self.resolved_revision()
        relative = ref.relative_dir_for(self.temperature_dir)
        if not self._uses_folders():
            return self._fetch_rows(ref)
        folder = None
        for name in TRACE_FILES:
            filename = f"{relative}/{name}"
            try:
                local = self._download(filename, commit)
            except RemoteEntryNotFoundError:
                if self._uses_parquet():
                    return self._fetch_rows(ref)
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
            folder = local.parent
        assert folder is not None
        return folder

    def _fetch_rows(self, ref: TraceRef) -> Path:
        """The three files of one trace from their Parquet rows (extracted once into the cache)."""
        relative = ref.relative_dir_for(self.temperature_dir)
        wanted = [f"{relative}/{name}" for name in TRACE_FILES]
        folder = self.parquet.files_root / relative
        if self._offline:
            missing = [name for name in TRACE_FILES if not (folder / name).is_file()]
            if missing:
                raise DataFault(f"{self.url_of(ref)}/{missing[0]}", f"{missing[0]} is not in the cache and the Hub "
                                "is unreachable", kind=NOT_CACHED)
            return folder
        # With the rest of the listed traces: a row group shared by several traces is read once.
        batch = wanted + [f"{r.relative_dir_for(self.temperature_dir)}/{name}"
                          for r in self._listed if r != ref for name in TRACE_FILES]
        local, faults = self.parquet.materialize(batch)
        for name, path in zip(TRACE_FILES, wanted, strict=True):
            if path in faults:
                raise faults[path]
            if path not in local:
                raise DataFault(f"{self.url_of(ref)}/{name}", f"required file {name} has no row in the Parquet "
                                f"shards of {self.repo_id}@{self.resolved_revision()}", kind=MISSING_FILE)
        return folder

    def fetch_rollouts(self, ref: TraceRef) -> dict[int, Path]:
        """Download (or reuse from the cache) every ``chunk_<i>/solutions.json`` of ONE trace.

        Returns chunk index -> local file; chunks without the file are absent (the caller reports
        them). Offline, whatever the cache holds for the pinned commit is returned."""
        commit = self.resolved_revision()
        trace_dir = ref.relative_dir_for(self.temperature_dir)
        if self._offline:
            root = self.parquet.files_root if self.layout() == PARQUET_LAYOUT else self.snapshot_dir
            return local_solution_files(LocalRolloutSource(root, self.temperature_dir).folder_of(ref))
        if not self._uses_folders():
            paths = {chunk_idx_from_dir(p.split("/")[-2]): p for p in self.parquet.paths()
                     if p.startswith(f"{trace_dir}/") and p.endswith("/solutions.json")}
            paths = {idx: path for idx, path in paths.items() if idx is not None and path == f"{trace_dir}/{solutions_relpath(idx)}"}
            local, faults = self.parquet.materialize(paths.values())
            for fault in faults.values():
                logger.warning("%s", fault)
            return {idx: local[path] for idx, path in sorted(paths.items()) if path in local}
        chunk_ids = sorted(i for i in map(chunk_idx_from_dir, self._list_folder(trace_dir, commit) or []) if i is not None)
        files: dict[int, Path] = {}
        total_bytes = 0
        for n, idx in enumerate(chunk_ids, 1):
            try:
                local = self._download(f"{trace_dir}/{solutions_relpath(idx)}", commit)
            except RemoteEntryNotFoundError:
                logger.warning("%s/%s is missing on the Hub", self.url_of(ref), solutions_relpath(idx))
                continue
            files[idx] = local
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
        layout = f", {self._layout} layout" if self._layout else ""
        return f"hf://{self.repo_id}@{self.revision}{commit} via {where}{layout}, cache {self.cache_dir}{mode}"
