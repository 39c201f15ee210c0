"""A stand-in for the Hugging Face hub on 127.0.0.1: the model-info, tree and resolve endpoints, with HEAD, ETag,
the commit header and Range requests, serving checkpoint directories; it counts the bytes of every response body."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class StandInHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo id -> {"sha": commit, "dir": Path, "branches": {name: commit}}
        self.body_bytes = 0
        self.requests: list[tuple[str, str, str | None]] = []
        self.served: list[tuple[str, int]] = []  # (path, body bytes) of every response
        self._count = threading.Lock()  # handlers run on threads: no lost updates
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo: str, directory: Path, commit: str | None = None) -> str:
        commit = commit or hashlib.sha1(repo.encode()).hexdigest()
        self.repos[repo] = {"sha": commit, "dir": Path(directory), "branches": {"main": commit}}
        return commit

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _files(self, repo: str) -> list[str]:
        d = self.repos[repo]["dir"]
        return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())

    def _commit(self, repo: str, rev: str) -> str | None:
        r = self.repos[repo]
        return r["sha"] if rev == r["sha"] else r["branches"].get(rev)

    def _send(self, h, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            with self._count:  # counted before the client can see the response
                self.body_bytes += len(body)
                self.served.append((unquote(urlparse(h.path).path), len(body)))
            h.wfile.write(body)

    def _json(self, h, value, head=False):
        self._send(h, 200, json.dumps(value).encode(), {"Content-Type": "application/json"}, head)

    def _not_found(self, h, code: str, head=False):
        self._send(h, 404, json.dumps({"error": code}).encode(), {"X-Error-Code": code, "X-Error-Message": code}, head)

    def _handle(self, h, head: bool) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        with self._count:
            self.requests.append((h.command, path, h.headers.get("Range")))
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?/?$", path)
        if m:
            repo, rev = m.group(1), m.group(2) or "main"
            if repo not in self.repos:
                return self._not_found(h, "RepoNotFound", head)
            commit = self._commit(repo, rev)
            if commit is None:
                return self._not_found(h, "RevisionNotFound", head)
            return self._json(h, {"id": repo, "modelId": repo, "sha": commit, "private": False, "disabled": False, "gated": False,
                                  "siblings": [{"rfilename": f} for f in self._files(repo)], "tags": [], "downloads": 0, "likes": 0,
                                  "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z"}, head)  # fmt: skip
        m = re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", path)
        if m:
            repo, rev = m.group(1), m.group(2)
            if repo not in self.repos or self._commit(repo, rev) is None:
                return self._not_found(h, "RevisionNotFound", head)
            d = self.repos[repo]["dir"]
            entries = []
            for f in self._files(repo):
                data = (d / f).read_bytes()
                blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                entries.append({"type": "file", "oid": blob, "size": len(data), "path": f})
            return self._json(h, entries, head)
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            repo, rev, name = m.group(1), m.group(2), m.group(3)
            if repo not in self.repos:
                return self._not_found(h, "RepoNotFound", head)
            commit = self._commit(repo, rev)
            file = self.repos[repo]["dir"] / name
            if commit is None:
                return self._not_found(h, "RevisionNotFound", head)
            if not file.is_file():
                return self._not_found(h, "EntryNotFound", head)
            data = file.read_bytes()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            headers = {"X-Repo-Commit": commit, "ETag": f'"{blob}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            rng = h.headers.get("Range")
            if rng:
                a, b = re.match(r"bytes=(\d+)-(\d*)", rng).groups()
                a, b = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                headers["Content-Range"] = f"bytes {a}-{b}/{len(data)}"
                return self._send(h, 206, data[a : b + 1], headers, head)
            return self._send(h, 200, data, headers, head)
        return self._not_found(h, "NotFound", head)
