"""A local Hugging Face Hub for the tests: the part of the Hub API huggingface_hub and ttsdoctor use.

- GET /api/models/ORG/NAME[/revision/REV]: the model info with file sizes (`siblings`, `sha`);
- HEAD and GET /ORG/NAME/resolve/REV/PATH, with Range (206 and Content-Range), the headers huggingface_hub reads
  (X-Repo-Commit, ETag, X-Linked-Size and X-Linked-Etag for LFS files);
- errors as the Hub sends them: X-Error-Code RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo.

Files are served from folders on disk (a 20 GB sparse shard costs nothing). Every body byte sent is counted per
repository, so tests assert what a check read. Repositories can be gated, private (a token is needed), slow (the
answer comes after a delay) or truncating (a range answer holds half of what it promises to).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

TOKEN = "hf_fakehub_secret_token_0123456789"
LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt")


@dataclass
class Repo:
    repo_id: str
    folder: str
    sha: str
    branches: dict[str, str] = field(default_factory=dict)  # revision name -> commit (main is always there)
    gated: bool = False
    private: bool = False
    delay: float = 0.0
    truncate: bool = False  # range answers hold half of what was asked, and say so
    hang_up: bool = False  # range answers promise what was asked, send half and close the connection
    extra_siblings: list[dict] = field(default_factory=list)  # listed, not served (hostile names, for example)

    def files(self) -> dict[str, str]:
        out = {}
        for walked, _dirs, names in os.walk(self.folder):
            for name in names:
                path = os.path.join(walked, name)
                out[os.path.relpath(path, self.folder).replace(os.sep, "/")] = path
        return dict(sorted(out.items()))


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.sent: dict[str, int] = {}  # repository -> body bytes sent
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.authorizations: list[str | None] = []
        self._server: ThreadingHTTPServer | None = None

    def add(self, repo_id: str, folder: str, **options: object) -> Repo:
        sha = hashlib.sha1(f"{repo_id}:{folder}".encode()).hexdigest()
        repo = Repo(repo_id, folder, sha, **options)  # type: ignore[arg-type]
        repo.branches.setdefault("main", sha)
        self.repos[repo_id] = repo
        return repo

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def bytes_sent(self, repo_id: str) -> int:
        return self.sent.get(repo_id, 0)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        # a client that closed its end (the hang-up cases, a timeout) is not a server error: socketserver would print
        # a traceback to the stderr the tests read
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _etag(path: str) -> str:
    st = os.stat(path)
    return hashlib.sha256(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    # --- answers ---

    def _error(self, status: int, code: str | None, repo: Repo | None = None) -> None:
        body = json.dumps({"error": code or "error"}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        if repo is not None:
            self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        return self.headers.get("authorization") == f"Bearer {TOKEN}"

    def _repo(self, org: str, name: str) -> Repo | None:
        repo = self.fake.repos.get(f"{org}/{name}")
        if repo is None or (repo.private and not self._authorized()):
            self._error(401 if repo is not None else 404, "RepoNotFound")
            return None
        if repo.delay:
            time.sleep(repo.delay)
        return repo

    def _commit(self, repo: Repo, revision: str) -> str | None:
        revision = unquote(revision)
        if revision in repo.branches:
            return repo.branches[revision]
        if revision == repo.sha:
            return revision
        self._error(404, "RevisionNotFound", repo)
        return None

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        self.fake.requests.append((self.command, path, self.headers.get("Range")))
        self.fake.authorizations.append(self.headers.get("authorization"))
        info = re.fullmatch(r"/api/models/([^/]+)/([^/]+)(?:/revision/([^/]+))?", path)
        if info:
            return self._info(info.group(1), info.group(2), info.group(3) or "main")
        resolve = re.fullmatch(r"/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve:
            return self._resolve(*resolve.groups())
        self._error(404, None)

    def _info(self, org: str, name: str, revision: str) -> None:
        repo = self._repo(org, name)
        if repo is None:
            return
        commit = self._commit(repo, revision)
        if commit is None:
            return
        siblings = []
        for rel, path in repo.files().items():
            size = os.path.getsize(path)
            entry: dict[str, object] = {"rfilename": rel, "size": size, "blobId": _etag(path)[:40]}
            if rel.endswith(LFS_SUFFIXES):
                entry["lfs"] = {"size": size, "sha256": _etag(path), "pointerSize": 134}
            siblings.append(entry)
        siblings += repo.extra_siblings
        body = json.dumps(
            {"id": repo.repo_id, "sha": commit, "private": repo.private, "gated": repo.gated, "siblings": siblings}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self.fake.sent[repo.repo_id] = self.fake.sent.get(repo.repo_id, 0) + len(body)

    def _resolve(self, org: str, name: str, revision: str, rel: str) -> None:
        repo = self._repo(org, name)
        if repo is None:
            return
        if repo.gated and not self._authorized():
            return self._error(401, "GatedRepo", repo)
        commit = self._commit(repo, revision)
        if commit is None:
            return
        path = repo.files().get(unquote(rel))
        if path is None:
            return self._error(404, "EntryNotFound", repo)
        size = os.path.getsize(path)
        start, end = 0, size - 1
        status = 200
        wanted = self.headers.get("Range")
        if wanted:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
            if match is None:
                return self._error(416, None, repo)
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            status = 206
        length = max(end - start + 1, 0)
        if repo.truncate and status == 206:
            length //= 2  # an answer that holds half of the range asked for, and says so
            end = start + length - 1
        self.send_response(status)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{_etag(path)}"')
        if rel.endswith(LFS_SUFFIXES):
            self.send_header("X-Linked-Etag", f'"{_etag(path)}"')
            self.send_header("X-Linked-Size", str(size))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        if repo.hang_up and status == 206:
            length //= 2
            self.close_connection = True
        with open(path, "rb") as fh:
            fh.seek(start)
            left = length
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break  # the client read what it wanted and closed
                self.fake.sent[repo.repo_id] = self.fake.sent.get(repo.repo_id, 0) + len(chunk)
                left -= len(chunk)
