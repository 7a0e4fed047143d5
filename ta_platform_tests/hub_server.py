"""A loopback stand-in for the Hugging Face Hub HTTP API, for testing the real ``huggingface_hub`` client.

Why: the Hub source must be tested end to end (listing, pinned downloads, cache reuse, revisions)
without the network and without monkeypatching the client. This server speaks the part of the Hub API
that ``HfApi.dataset_info``, ``HfApi.list_repo_tree`` (recursive or not, cursor pagination through a
``Link`` header) and ``hf_hub_download`` (HEAD then GET on ``/resolve/``, with ``ETag``,
``X-Repo-Commit`` and ``Content-Length``; ``X-Error-Code`` on 404s) use, serving one dataset repo
whose revisions are local folders. Every request is recorded so tests can assert what was fetched.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file, which is what the Hub sends as the ETag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


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

    def __init__(self, repo_id: str, revisions: dict[str, Path], page_size: int = 1000):
        self.repo_id = repo_id
        self.page_size = page_size
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

    def log_message(self, format, *args):  # keep test output clean
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
        self.hub.record(self.command, decoded_path, split.query)
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
    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
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
                entries.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": relative})
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
            "ETag": f'"{git_blob_sha1(data)}"',
            "X-Repo-Commit": revision.commit,
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{quote(target.name)}"',
        }
        self._send(200, data, headers, head=head)
