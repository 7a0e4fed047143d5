"""The math-rollouts repo as re-published in August 2025: Parquet shards under ``data/``, one row per file.

Why it is shaped this way:
- The authors' ``misc-scripts/push_hf_dataset.py`` (interp-reasoning/thought-anchors 2a15f77) walks the
  old folder with ``os.walk`` and writes one row per file (``path`` = the file's path in the folder
  layout, ``filename``, ``extension``, ``size_bytes``, ``content`` = the JSON text) through
  ``datasets.push_to_hub`` into ``data/<split>-<i>-of-<n>.parquet``. ~29k rows, ~91 GB, almost all of
  it the ``chunk_<i>/solutions.json`` rollouts a probe never reads, and no order a reader can rely on
  (``os.walk`` follows the author's directory order).
- So nothing is downloaded whole. The shard listing (``data/``, with sizes and LFS sha256) costs one
  request. Each shard's footer (schema, row groups, column-chunk offsets, ``path`` statistics) is read
  with an HTTP range request on its tail, and the ``path`` and ``size_bytes`` columns of every row group
  (a few KB each) with one more range request per row group: that builds an exact index path -> (shard,
  row group, row, size), cached per commit in the Hub cache, so later runs need no request to list.
- A trace's three files are read from the row groups that hold them only, ``path``/``content``/
  ``size_bytes`` columns only, streamed page by page (``buffer_size``, no pre-buffering) and stopped after
  the last needed row. The footer offers no page index in what ``datasets`` writes, so a row costs at
  most its row group's content chunk up to that row, never the shard, never the repo.
- A stalled answer ends at the client's read timeout (``HF_HUB_DOWNLOAD_TIMEOUT``, as for file downloads).
- Integrity: every range answer must be a 206 with the asked ``Content-Range`` and length; each row's
  content must be ``size_bytes`` long in UTF-8 (what the author's script recorded from disk); page CRCs
  are verified where the writer stored them (``page_checksum_verification``). A bad answer is retried
  (``http_retry``); a row that stays wrong is a ``DataFault`` naming the shard and the path.
- Extracted files go to ``<repo cache>/parquet_files/<commit>/<path>`` (atomic writes): the same folder
  layout the parser reads, reused with no network call on the next load.
"""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ta_platform.common.atomic import atomic_write_bytes, atomic_write_text
from ta_platform.common.faults import DataFault
from ta_platform.rollouts.http_retry import IntegrityError, RetryPolicy, call_with_retry
from ta_platform.rollouts.parsing import MISSING_FILE

logger = logging.getLogger(__name__)

DATA_DIR = "data"
PARQUET_SUFFIX = ".parquet"
ROW_COLUMNS = ("path", "size_bytes")
INDEX_VERSION = 1
SIZE_MISMATCH = "size_mismatch"


@dataclass(frozen=True)
class Shard:
    path: str  # in the repo, e.g. data/default-00000-of-00190.parquet
    size: int
    sha256: str | None  # the LFS oid, when the listing gives it


@dataclass(frozen=True)
class RowLocation:
    shard: int  # index into the shard list
    row_group: int
    row: int  # within the row group
    size_bytes: int


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of one remote file; every read is one HTTP range request, retried.

    pyarrow reads a Parquet footer and column chunks through it, so only the bytes asked for travel.
    ``bytes_read`` counts what was received (for the tests and ``describe``).
    """

    def __init__(self, url: str, size: int, headers: dict[str, str], policy: RetryPolicy, what: str):
        super().__init__()
        self.url, self.size, self.headers, self.policy, self.what = url, size, headers, policy, what
        self.position = 0
        self.bytes_read = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), self.size - self.position)
        if wanted <= 0:
            return 0
        data = self.read_range(self.position, wanted)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def read_range(self, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)``, checked against the answer's status, range and length."""
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session, hf_raise_for_status

        end = start + length - 1

        def attempt() -> bytes:
            self.requests += 1
            response = get_session().get(self.url, headers={**self.headers, "Range": f"bytes={start}-{end}"},
                                         timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT, follow_redirects=True)
            hf_raise_for_status(response)
            body = response.content
            self.bytes_read += len(body)
            if response.status_code == 200 and start == 0 and len(body) == self.size:
                return body[:length]  # a server that ignores Range: the whole (small) file
            announced = response.headers.get("Content-Range", "")
            if response.status_code != 206 or not announced.startswith(f"bytes {start}-{end}/"):
                raise IntegrityError(f"{self.what}: asked bytes {start}-{end}, got HTTP {response.status_code} "
                                     f"with Content-Range {announced!r}")
            if len(body) != length:
                raise IntegrityError(f"{self.what}: bytes {start}-{end}: received {len(body)} of {length} bytes")
            return body

        return call_with_retry(attempt, f"{self.what} (bytes {start}-{end})", self.policy)


class ParquetRows:
    """The Parquet layout of one pinned commit: the path index, and the rows of the files a trace needs."""

    def __init__(self, repo_id: str, commit: str, repo_cache: Path, endpoint: str | None, token,
                 policy: RetryPolicy, list_tree):
        self.repo_id, self.commit, self.repo_cache = repo_id, commit, repo_cache
        self.endpoint, self.token, self.policy = endpoint, token, policy
        self._list_tree = list_tree  # (path_in_repo, recursive) -> entries, retried by the caller
        self._shards: list[Shard] | None = None
        self._index: dict[str, RowLocation] | None = None
        self._files: dict[int, RangeFile] = {}
        self._footers: dict[int, object] = {}  # shard -> pyarrow FileMetaData, read once per process

    # --- where things live ------------------------------------------------------------------------
    @property
    def files_root(self) -> Path:
        """The folder layout rebuilt from extracted rows (what ``parse_trace`` reads)."""
        return self.repo_cache / "parquet_files" / self.commit

    @property
    def index_file(self) -> Path:
        return self.repo_cache / "parquet_index" / f"{self.commit}.json"

    def url_of(self, shard: Shard) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo_id, shard.path, repo_type="dataset", revision=self.commit, endpoint=self.endpoint)

    def bytes_read(self) -> int:
        return sum(f.bytes_read for f in self._files.values())

    # --- shards and index -------------------------------------------------------------------------
    def shards(self) -> list[Shard]:
        """The ``data/*.parquet`` files of the commit, with sizes and LFS sha256 from the listing."""
        if self._shards is None:
            from huggingface_hub import RepoFile

            entries = self._list_tree(DATA_DIR, True) or []
            self._shards = sorted(
                (Shard(e.path, int(e.size), getattr(e.lfs, "sha256", None) if e.lfs else None)
                 for e in entries if isinstance(e, RepoFile) and e.path.endswith(PARQUET_SUFFIX)),
                key=lambda s: s.path)
        return self._shards

    def _range_file(self, i: int) -> RangeFile:
        if i not in self._files:
            from huggingface_hub.utils import build_hf_headers

            shard = self.shards()[i]
            self._files[i] = RangeFile(self.url_of(shard), shard.size, build_hf_headers(token=self.token),
                                       self.policy, f"hf://{self.repo_id}@{self.commit}/{shard.path}")
        return self._files[i]

    def _footer(self, i: int):
        """The shard's FileMetaData from exactly its footer: two range requests (the last 8 bytes give
        the footer's length), not pyarrow's default 64 KB tail read that would pull row data too."""
        if i not in self._footers:
            import pyarrow as pa
            import pyarrow.parquet as pq

            remote = self._range_file(i)
            tail = remote.read_range(remote.size - 8, 8)
            length = int.from_bytes(tail[:4], "little")
            if tail[4:] != b"PAR1" or length > remote.size - 12:
                raise IntegrityError(f"{remote.what}: not a Parquet file end (magic {tail[4:]!r}, footer {length} B)")
            footer = remote.read_range(remote.size - 8 - length, length)
            self._footers[i] = pq.read_metadata(pa.BufferReader(b"PAR1" + footer + tail))
        return self._footers[i]

    def _parquet(self, i: int):
        import pyarrow.parquet as pq

        return pq.ParquetFile(self._range_file(i), metadata=self._footer(i), pre_buffer=False,
                              buffer_size=1 << 20, page_checksum_verification=True)

    def index(self) -> dict[str, RowLocation]:
        """path -> where its row is; from the cache file when this commit was indexed before."""
        if self._index is not None:
            return self._index
        cached = self._read_index()
        if cached is not None:
            self._index = cached
            return cached
        index: dict[str, RowLocation] = {}
        for i, shard in enumerate(self.shards()):
            what = f"hf://{self.repo_id}@{self.commit}/{shard.path}"

            def read_paths(i=i, what=what):
                self._footers.pop(i, None)  # a footer that failed to decode is read again
                parquet = self._parquet(i)
                missing = [c for c in ROW_COLUMNS + ("content",) if c not in parquet.schema_arrow.names]
                if missing:
                    raise DataFault(what, f"not a math-rollouts file-per-row shard: no column(s) {missing}",
                                    kind="format")
                return [parquet.read_row_group(g, columns=list(ROW_COLUMNS)).to_pylist()
                        for g in range(parquet.num_row_groups)]

            for group, rows in enumerate(self._decode(read_paths, what)):
                for row, record in enumerate(rows):
                    index[record["path"]] = RowLocation(i, group, row, int(record["size_bytes"]))
        self._write_index(index)
        self._index = index
        return index

    def _decode(self, read, what: str):
        """``read()`` with retries, a corrupt or short answer that pyarrow cannot decode counting as transient."""
        import pyarrow as pa

        def attempt():
            try:
                return read()
            except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as error:
                if isinstance(error, IntegrityError) or getattr(error, "response", None) is not None:
                    raise
                raise IntegrityError(f"{what}: {error}") from error

        return call_with_retry(attempt, what, self.policy)

    def _read_index(self) -> dict[str, RowLocation] | None:
        try:
            payload = json.loads(self.index_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if payload.get("version") != INDEX_VERSION:
            return None
        self._shards = [Shard(**s) for s in payload["shards"]]
        return {path: RowLocation(*loc) for path, loc in payload["rows"].items()}

    def _write_index(self, index: dict[str, RowLocation]) -> None:
        payload = {"version": INDEX_VERSION, "commit": self.commit,
                   "shards": [s.__dict__ for s in self.shards()],
                   "rows": {p: [r.shard, r.row_group, r.row, r.size_bytes] for p, r in sorted(index.items())}}
        atomic_write_text(self.index_file, json.dumps(payload, sort_keys=True))

    def paths(self) -> list[str]:
        return sorted(self.index())

    # --- rows -> files ----------------------------------------------------------------------------
    def materialize(self, paths: Iterable[str]) -> tuple[dict[str, Path], dict[str, DataFault]]:
        """Local copies of the files at ``paths`` (cached ones reused), and the faults of bad rows.

        Each row group is read once, for all the paths it holds; a path with no row is in neither
        result (the caller reports it missing)."""
        index = self.index()
        local: dict[str, Path] = {}
        needed: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
        for path in paths:
            target = self.files_root / path
            if target.is_file():
                local[path] = target
            elif path in index:
                where = index[path]
                needed[(where.shard, where.row_group)][where.row] = path
        faults: dict[str, DataFault] = {}
        for (shard, group), rows in sorted(needed.items()):
            good, bad = self._read_rows(shard, group, rows)
            for path, data in good.items():
                local[path] = atomic_write_bytes(self.files_root / path, data)
            faults.update(bad)
        return local, faults

    def _read_rows(self, shard: int, group: int, rows: dict[int, str]) -> tuple[dict[str, bytes], dict[str, DataFault]]:
        """The content of ``rows`` (row -> path) of one row group, streamed up to the last one needed:
        the sound rows, and a ``DataFault`` (naming the shard and path) for each bad one."""
        what = f"hf://{self.repo_id}@{self.commit}/{self.shards()[shard].path}"
        last = max(rows)

        def read():
            found: dict[int, dict] = {}
            offset = 0
            batches = self._parquet(shard).iter_batches(batch_size=1, row_groups=[group],
                                                        columns=["path", "size_bytes", "content"])
            for batch in batches:
                if offset in rows:
                    found[offset] = batch.to_pylist()[0]
                offset += batch.num_rows
                if offset > last:
                    break
            return found

        found = self._decode(read, what)
        good: dict[str, bytes] = {}
        bad: dict[str, DataFault] = {}
        for row, path in rows.items():
            record = found.get(row)
            if record is None or record["path"] != path:
                bad[path] = DataFault(f"{what}#{path}", f"row {row} of row group {group} is not {path} (found "
                                      f"{None if record is None else record['path']!r}); the index is stale",
                                      kind=MISSING_FILE)
            elif record["content"] is None:
                bad[path] = DataFault(f"{what}#{path}", "the row has no content (null)", kind=MISSING_FILE)
            elif len(data := record["content"].encode("utf-8")) != record["size_bytes"]:
                bad[path] = DataFault(f"{what}#{path}", f"content is {len(data)} bytes, size_bytes says "
                                      f"{record['size_bytes']} (not the original file)", kind=SIZE_MISMATCH)
            else:
                good[path] = data
        return good, bad
