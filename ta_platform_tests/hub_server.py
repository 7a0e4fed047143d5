"""A loopback stand-in for the Hugging Face Hub HTTP API, for testing the real ``huggingface_hub`` client.

Why: the Hub source must be tested end to end (listing, pinned downloads, cache reuse, revisions)
without the network and without monkeypatching the client. This server speaks the part of the Hub API
that ``HfApi.dataset_info``, ``HfApi.list_repo_tree`` (recursive or not, cursor pagination through a
``Link`` header) and ``hf_hub_download`` (HEAD then GET on ``/resolve/``, with ``ETag``,
``X-Repo-Commit`` and ``Content-Length``; ``X-Error-Code`` on 404s; ``Range`` -> 206) use, serving one
dataset repo whose revisions are local folders. Files with an LFS suffix (``.parquet`` by default) are
served as the Hub serves LFS files: their ETag and tree ``lfs.oid`` are the sha256 of the content.
Every request is recorded so tests can assert what was fetched.

Faults (``HubServer.inject``) are planted per request path and method and consumed in order: HTTP
500/503, a connection reset (RST, no response), a stalled body (headers and half the body, then
silence), a truncated body (full ``Content-Length``, half the bytes, then close), a short body (half
the bytes with a matching ``Content-Length``: only a size check sees it) and a bit flip (right length,
one byte changed: only a hash check sees it). ``build_parquet_layout`` writes a folder-layout dataset
the way the authors re-published it (``misc-scripts/push_hf_dataset.py``): Parquet shards under
``data/`` with one row per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file, which is what the Hub sends as the ETag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FAULT_KINDS = ("500", "503", "reset", "stall", "truncate", "short", "flip")


@dataclass
class Fault:
    """One planted fault: ``kind`` on the next ``times`` requests (-1: every one) whose decoded path
    contains ``path`` (None: any path) and whose method is ``method`` (None: any)."""

    kind: str
    path: str | None = None
    method: str | None = "GET"
    times: int = 1
    stall_s: float = 3.0
    offset: int | None = None  # a "flip" of this byte of the file, on a response that carries it
    served: list[str] = field(default_factory=list)

    def matches(self, method: str, path: str) -> bool:
        return (self.times != 0 and (self.method is None or self.method == method)
                and (self.path is None or self.path in path))


@dataclass(frozen=True)
class Revision:
    name: str
    commit: str
    folder: Path


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # decoded path, without the query
    query: str


class HubServer:
    """Serve ``repo_id`` (a dataset repo) on 127.0.0.1 at a random port; use as a context manager.

    ``revisions`` maps a branch or tag name to the folder holding that revision's files; each gets a
    stable fake commit hash, and the commit hash itself is accepted as a revision too.
    """

    def __init__(self, repo_id: str, revisions: dict[str, Path], page_size: int = 1000,
                 lfs_suffixes: tuple[str, ...] = (".parquet",)):
        self.repo_id = repo_id
        self.page_size = page_size
        self.lfs_suffixes = lfs_suffixes
        self.faults: list[Fault] = []
        self.revisions: dict[str, Revision] = {}
        for name, folder in revisions.items():
            commit = hashlib.sha1(f"commit:{repo_id}:{name}".encode()).hexdigest()
            revision = Revision(name, commit, Path(folder))
            self.revisions[name] = revision
            self.revisions[commit] = revision
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> HubServer:
        handler = type("Handler", (_HubHandler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def commit_of(self, name: str) -> str:
        return self.revisions[name].commit

    # --- what was asked -------------------------------------------------------------------------
    def record(self, method: str, path: str, query: str) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query))

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()

    def inject(self, kind: str, path: str | None = None, method: str | None = "GET", times: int = 1,
               stall_s: float = 3.0, offset: int | None = None) -> Fault:
        """Plant ``kind`` (one of ``FAULT_KINDS``) on matching requests; returns the fault (see ``.served``).

        ``offset`` (a flip only): flip that byte of the file, on the next responses whose range holds it."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULT_KINDS}")
        if offset is not None and kind != "flip":
            raise ValueError("offset is for a flip")
        fault = Fault(kind, path, method, times, stall_s, offset)
        with self._lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str, span: tuple[int, int] | None = None) -> Fault | None:
        """The next planted fault for this request (consumed); ``span``: the file bytes it carries,
        for faults planted at an offset (matched only then)."""
        with self._lock:
            for fault in self.faults:
                at = fault.offset
                if (at is None) != (span is None) or (span is not None and not span[0] <= at <= span[1]):
                    continue
                if fault.matches(method, path):
                    if fault.times > 0:
                        fault.times -= 1
                    fault.served.append(f"{method} {path}")
                    return fault
        return None

    def is_lfs(self, path: str) -> bool:
        return path.endswith(self.lfs_suffixes)

    def etag_of(self, path: str, data: bytes) -> str:
        return sha256_hex(data) if self.is_lfs(path) else git_blob_sha1(data)

    def range_requests(self) -> list[str]:
        """Paths fetched with a ``Range`` header (recorded in the query slot as ``range=...``)."""
        return [r.path for r in list(self.requests) if r.query.startswith("range=")]

    def file_requests(self, method: str | None = None) -> list[str]:
        """Repo file paths requested through ``/resolve/`` (optionally only HEAD or GET)."""
        marker = f"/datasets/{self.repo_id}/resolve/"
        found = []
        for request in list(self.requests):
            if request.path.startswith(marker) and (method is None or request.method == method):
                found.append(request.path[len(marker) :].split("/", 1)[1])
        return found

    def downloads(self) -> list[str]:
        """Repo file paths whose content was sent (GET on ``/resolve/``)."""
        return self.file_requests("GET")


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubServer  # set on the per-server subclass
    server_version = "FakeHub/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub: a reset then hits a reused connection
    fault: Fault | None = None
    span_start = 0  # the file offset of the body being sent (a range answer)

    def log_message(self, format, *args):  # keep test output clean
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, OSError):
            pass  # the client gave up on a stalled or broken response: nothing to answer

    def finish(self) -> None:
        try:
            super().finish()
        except (ConnectionError, OSError):
            pass

    # --- dispatch -------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        split = urlsplit(self.path)
        raw_segments = split.path.split("/")
        decoded_path = unquote(split.path)
        range_header = self.headers.get("Range")
        self.hub.record(self.command, decoded_path, f"range={range_header}" if range_header else split.query)
        self.fault = self.hub.take_fault(self.command, decoded_path)
        if self.fault is not None and self.fault.kind in ("500", "503"):
            return self._error(int(self.fault.kind), None, f"injected HTTP {self.fault.kind}")
        if self.fault is not None and self.fault.kind == "reset":
            return self._reset()
        repo_segments = self.hub.repo_id.split("/")
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        # /api/datasets/<owner>/<name>/(revision|tree)/<rev>[/<path>]
        if raw_segments[1:3] == ["api", "datasets"]:
            if raw_segments[3:5] != repo_segments:
                return self._error(404, "RepoNotFound", "Repository not found")
            action = raw_segments[5] if len(raw_segments) > 5 else ""
            revision = unquote(raw_segments[6]) if len(raw_segments) > 6 else "main"
            inner = unquote("/".join(raw_segments[7:]))
            if action == "revision" or action == "":
                return self._repo_info(revision)
            if action == "tree":
                return self._tree(revision, inner, query, split.path)
            return self._error(404, None, "Not found")
        # /datasets/<owner>/<name>/resolve/<rev>/<path>
        if raw_segments[1:2] == ["datasets"] and raw_segments[4:5] == ["resolve"]:
            if raw_segments[2:4] != repo_segments:
                return self._error(404, "RepoNotFound", "Repository not found")
            revision = unquote(raw_segments[5]) if len(raw_segments) > 5 else ""
            return self._resolve(revision, unquote("/".join(raw_segments[6:])), head)
        return self._error(404, None, "Not found")

    # --- responses ------------------------------------------------------------------------------
    def _reset(self) -> None:
        """Abort the connection with a TCP RST and no response at all."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        fault = self.fault if not head and status < 300 else None
        length = len(body)
        if fault is not None and fault.kind == "short":
            body = body[: len(body) // 2]
            length = len(body)
        elif fault is not None and fault.kind == "flip" and body:
            middle = len(body) // 2 if fault.offset is None else fault.offset - self.span_start
            body = body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        if fault is not None and fault.kind in ("truncate", "stall"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if fault.kind == "stall":
                time.sleep(fault.stall_s)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def _json(self, payload, headers: dict[str, str] | None = None) -> None:
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers, head=self.command == "HEAD")

    def _revision(self, name: str) -> Revision | None:
        return self.hub.revisions.get(name)

    def _repo_info(self, name: str) -> None:
        revision = self._revision(name)
        if revision is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {name}")
        self._json({"id": self.hub.repo_id, "sha": revision.commit, "private": False, "disabled": False,
                    "gated": False, "tags": [], "siblings": None})

    def _tree(self, name: str, inner: str, query: dict[str, str], raw_path: str) -> None:
        revision = self._revision(name)
        if revision is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {name}")
        base = revision.folder / inner if inner else revision.folder
        if not base.is_dir():
            return self._error(404, "EntryNotFound", f"{inner} does not exist on {name}", revision.commit)
        recursive = query.get("recursive", "false").lower() == "true"
        children = sorted(base.rglob("*") if recursive else base.iterdir())
        entries = []
        for child in children:
            relative = child.relative_to(revision.folder).as_posix()
            if child.is_dir():
                entries.append({"type": "directory", "oid": hashlib.sha1(relative.encode()).hexdigest(),
                                "size": 0, "path": relative})
            else:
                data = child.read_bytes()
                entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": relative}
                if self.hub.is_lfs(relative):
                    entry["lfs"] = {"oid": sha256_hex(data), "size": len(data), "pointerSize": 134}
                entries.append(entry)
        start = int(query.get("cursor", "0"))
        page = entries[start : start + self.hub.page_size]
        headers = {}
        if start + self.hub.page_size < len(entries):
            params = f"recursive={str(recursive).lower()}&expand=false&cursor={start + self.hub.page_size}"
            headers["Link"] = f'<{self.hub.endpoint}{raw_path}?{params}>; rel="next"'
        self._json(page, headers)

    def _resolve(self, name: str, path: str, head: bool) -> None:
        revision = self._revision(name)
        if revision is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {name}")
        target = revision.folder / path
        if not path or ".." in Path(path).parts or not target.is_file():
            return self._error(404, "EntryNotFound", f"{path} does not exist on {name}", revision.commit)
        data = target.read_bytes()
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{self.hub.etag_of(path, data)}"',
            "X-Repo-Commit": revision.commit,
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{quote(target.name)}"',
        }
        wanted = parse_range(self.headers.get("Range"), len(data))
        start, end = wanted if wanted is not None and not head else (0, len(data) - 1)
        if self.fault is None and not head:
            self.fault = self.hub.take_fault(self.command, unquote(urlsplit(self.path).path), (start, end))
            self.span_start = start
        if wanted is None or head:
            return self._send(200, data, headers, head=head)
        if start >= len(data) or start > end:
            return self._error(416, None, f"range not satisfiable for {len(data)} bytes")
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(206, data[start : end + 1], headers)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> inclusive (start, end); None without a usable header."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes="):].strip().partition("-")
    if not first:
        return max(0, size - int(last)), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


def build_parquet_layout(source: Path, dest: Path, shards: int = 3, rows_per_group: int = 4,
                         page_checksums: bool = True, skip: tuple[str, ...] = (),
                         compression: str = "snappy") -> list[Path]:
    """``source`` (a folder-layout dataset) re-published as the authors did in August 2025.

    As ``misc-scripts/push_hf_dataset.py`` (interp-reasoning/thought-anchors 2a15f77): walk the folder
    with ``os.walk``, one row per file (``path`` relative to the root, ``filename``, ``extension``
    lower-cased, ``size_bytes`` on disk, ``content`` as UTF-8 text for .json/.jsonl, else null), written
    by ``datasets.push_to_hub`` as ``data/<split>-<i>-of-<n>.parquet`` shards of the split ``default``.
    Small row groups here so tests see row-group filtering at work; ``page_checksums`` stores page CRCs
    (``datasets`` does not; a reader can verify them only where they exist); paths in ``skip`` get no
    row; ``compression="none"`` leaves values as plain bytes (a flipped bit then decodes silently unless
    a page CRC catches it). Returns the shard paths.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for dirpath, _dirnames, filenames in os.walk(source):
        for name in filenames:
            absolute = Path(dirpath) / name
            if absolute.relative_to(source).as_posix() in skip:
                continue
            extension = os.path.splitext(name)[1].lower()
            content = absolute.read_text(encoding="utf-8", errors="replace") if extension in (".json", ".jsonl") else None
            rows.append({"path": absolute.relative_to(source).as_posix(), "filename": name, "extension": extension,
                         "size_bytes": absolute.stat().st_size, "content": content})
    schema = pa.schema([("path", pa.string()), ("filename", pa.string()), ("extension", pa.string()),
                        ("size_bytes", pa.int64()), ("content", pa.string())])
    (dest / "data").mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(rows) // shards)
    written = []
    for i in range(shards):
        part = rows[i * per_shard : (i + 1) * per_shard]
        path = dest / "data" / f"default-{i:05d}-of-{shards:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(part, schema=schema), path, row_group_size=rows_per_group,
                       write_page_checksum=page_checksums, compression=compression)
        written.append(path)
    (dest / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                    "  - split: default\n    path: data/default-*\n---\n")
    return written
