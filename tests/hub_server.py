"""A stand-in for the Hugging Face Hub on loopback: the few endpoints huggingface_hub's client
calls to read a model card and commit a new README.md. It records every request (method, path,
headers) and every commit, so tests can check what was uploaded and how.

It also serves dataset repositories (`hub.datasets[repo_id] = DatasetRepo({path: bytes})`) for
`snapshot_download(..., repo_type="dataset")`: the repository's info and its files, so tests
build the local Hub cache exactly as the library writes it.

The only stand-in the project allows (no machine here reaches the Hub): the client under test is
huggingface_hub itself, pointed here with HF_ENDPOINT.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Repo:
    """One repository: its files (README.md among them, or not), its current commit and every
    commit made (`files`: path -> bytes of that commit; `content`: its README.md or None).
    `writable=False` makes the write-access check answer 403."""

    readme: bytes | None = None
    sha: str = "0" * 40
    commits: list[dict] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    writable: bool = True

    def __post_init__(self) -> None:
        if self.readme is not None:
            self.files["README.md"] = self.readme

    def commit(self, files: dict[str, bytes], header: dict, create_pr: bool) -> str:
        """Record a commit and (unless it is a pull request) make it the new main."""
        sha = hashlib.sha1(self.sha.encode() + repr(sorted(files.items())).encode()).hexdigest()
        self.commits.append(
            {
                "header": header,
                "files": files,
                "content": files.get("README.md"),
                "create_pr": create_pr,
            }
        )
        if not create_pr:
            self.files.update(files)
            self.readme, self.sha = self.files.get("README.md"), sha
        return sha


@dataclass
class DatasetRepo:
    """A dataset repository: its files at one commit."""

    files: dict[str, bytes]
    sha: str = "d" * 40


def _oid(body: bytes) -> str:
    return hashlib.sha1(body).hexdigest()


def _tree(files: dict[str, bytes], folder: str, recursive: bool) -> list[dict]:
    """The Hub's tree listing of `folder`: its files, and its sub-folders unless recursive."""
    prefix = f"{folder}/" if folder else ""
    out: dict[str, dict] = {}
    for path, body in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        if recursive or "/" not in rest:
            out[path] = {"type": "file", "path": path, "size": len(body), "oid": _oid(body)}
        else:
            sub = prefix + rest.split("/", 1)[0]
            out[sub] = {"type": "directory", "path": sub, "oid": _oid(sub.encode())}
    return list(out.values())


def validate_card(text: str) -> list[str]:
    """What the Hub checks in a card's metadata: YAML front matter and model-index's shape."""
    import yaml

    if not text.startswith("---\n"):
        return ["no YAML front matter"]
    try:
        meta = yaml.safe_load(text.split("---\n", 2)[1]) or {}
    except yaml.YAMLError as exc:
        return [f"invalid YAML: {exc}"]
    errors = []
    for i, model in enumerate(meta.get("model-index") or []):
        for j, result in enumerate(model.get("results") or []):
            where = f"model-index[{i}].results[{j}]"
            if not result.get("task", {}).get("type"):
                errors.append(f"{where}.task.type is required")
            if not {"type", "name"} <= set(result.get("dataset") or {}):
                errors.append(f"{where}.dataset needs type and name")
            for k, metric in enumerate(result.get("metrics") or []):
                if "type" not in metric or not isinstance(metric.get("value"), (int, float)):
                    errors.append(f"{where}.metrics[{k}] needs type and a numeric value")
    return errors


class HubServer:
    """`with HubServer() as hub: hub.url` -> an HF_ENDPOINT for huggingface_hub."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.datasets: dict[str, DatasetRepo] = {}
        self.requests: list[dict] = []
        self.bump_before_commit = False  # simulate a concurrent edit on the Hub
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        """Forget every repository and request."""
        self.repos.clear()
        self.datasets.clear()
        self.requests.clear()
        self.bump_before_commit = False

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, code: int, doc: dict, headers: dict | None = None) -> None:
                self._send(
                    code,
                    json.dumps(doc).encode(),
                    {"Content-Type": "application/json", **(headers or {})},
                )

            def _route(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hub.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }
                )
                parts = url.path.strip("/").split("/")
                if parts[0] == "datasets" or parts[:2] == ["api", "datasets"]:
                    return self._dataset(parts[1:] if parts[0] == "datasets" else parts[2:])
                if parts == ["api", "validate-yaml"]:
                    errors = validate_card(json.loads(body)["content"])
                    return self._json(
                        400 if errors else 200,
                        {"errors": [{"message": e} for e in errors], "warnings": []},
                    )
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo_id, rest = "/".join(parts[2:4]), parts[4:]
                    repo = hub.repos.get(repo_id)
                    if repo is None:
                        return self._json(
                            404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                        )
                    if rest[:1] == ["auth-check"]:
                        if rest[1:] == ["write"] and not repo.writable:
                            return self._json(403, {"error": "no write access"})
                        return self._json(200, {})
                    if not rest or rest[0] == "revision":
                        siblings = [{"rfilename": p} for p in sorted(repo.files)]
                        return self._json(
                            200,
                            {
                                "id": repo_id,
                                "modelId": repo_id,
                                "sha": repo.sha,
                                "siblings": siblings,
                                "private": False,
                            },
                        )
                    if rest[0] == "preupload":
                        files = json.loads(body)["files"]
                        return self._json(
                            200,
                            {
                                "files": [
                                    {
                                        "path": f["path"],
                                        "uploadMode": "regular",
                                        "shouldIgnore": False,
                                    }
                                    for f in files
                                ]
                            },
                        )
                    if rest[0] == "commit":
                        lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
                        header = next(x["value"] for x in lines if x["key"] == "header")
                        files = [x["value"] for x in lines if x["key"] == "file"]
                        if hub.bump_before_commit:
                            repo.sha = hashlib.sha1(repo.sha.encode()).hexdigest()
                        if header.get("parentCommit") not in (None, repo.sha):
                            return self._json(412, {"error": "parent commit is not the head"})
                        create_pr = parse_qs(url.query).get("create_pr") == ["1"]
                        content = {f["path"]: base64.b64decode(f["content"]) for f in files}
                        sha = repo.commit(content, header, create_pr)
                        repo.commits[-1]["files"] = {
                            f["path"]: base64.b64decode(f["content"]) for f in files
                        }
                        pr = f"{hub.url}/{repo_id}/discussions/1" if create_pr else None
                        return self._json(
                            200,
                            {
                                "commitUrl": f"{hub.url}/{repo_id}/commit/{sha}",
                                "commitOid": sha,
                                "pullRequestUrl": pr,
                            },
                        )
                if "resolve" in parts:
                    at = parts.index("resolve")
                    repo = hub.repos.get("/".join(parts[:at]))
                    data = repo and repo.files.get("/".join(parts[at + 2 :]))
                    if data is None:
                        return self._json(
                            404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}
                        )
                    etag = hashlib.sha1(data).hexdigest()
                    return self._send(200, data, {"ETag": f'"{etag}"', "X-Repo-Commit": repo.sha})
                return self._json(404, {"error": f"not served by the test hub: {url.path}"})

            def _dataset(self, parts: list[str]) -> None:
                """`api/datasets/O/N/revision/R` (info), `.../tree/R` (files) and
                `datasets/O/N/resolve/R/PATH` (a file)."""
                repo = hub.datasets.get("/".join(parts[:2]))
                if repo is None:
                    return self._json(
                        404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                    )
                if parts[2:3] == ["resolve"]:
                    body = repo.files.get("/".join(parts[4:]))
                    if body is None:
                        return self._json(
                            404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}
                        )
                    head = {"ETag": f'"{_oid(body)}"', "X-Repo-Commit": repo.sha}
                    return self._send(200, body, head)
                if parts[2:3] == ["tree"]:
                    recursive = parse_qs(urlparse(self.path).query).get("recursive") == ["true"]
                    return self._json(200, _tree(repo.files, "/".join(parts[4:]), recursive))
                siblings = [{"rfilename": name} for name in sorted(repo.files)]
                return self._json(
                    200, {"id": "/".join(parts[:2]), "sha": repo.sha, "siblings": siblings}
                )

            do_GET = do_HEAD = do_POST = _route

        return Handler
