"""The worker that reaches a host: the `gpu_worker` package of the INSTALLED orch, never a copy
inside the user's repository.

- `identity()`: orch's version (`importlib.metadata`, "source" when orch runs from a checkout)
  and a sha256 over the package's files: the worker's identity, recorded in every results.json
  as `run.worker` beside the project's `run.code`.
- `ship(host)`: puts the package at `<remote_dir>/worker/<hash>/gpu_worker/` with
  `orch-worker.json` beside it, once per host and worker version (one round trip when it is
  already there): unpacked into a temp folder and renamed, so a cut link leaves nothing half
  written. Runs of different orch versions on one host each keep their own worker.
- `worker_dir(host)`: that folder; the job script puts it first on PYTHONPATH
  (`scripts.python_setup`), so `python -m gpu_worker` works on a host where `orch setup` never
  ran, as long as its python has the worker's packages.
- `requirements()`: the `worker` extra of orch's own package metadata (not the user's files).

The orchestrator never imports the worker's code: the package is found with
`importlib.util.find_spec`, which does not run it.
"""

from __future__ import annotations

import configparser
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import re
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from gpu_worker.contract.layout import WORKER_DIR, WORKER_FILE

from . import shell
from .errors import OrchError
from .transport import Host

DISTRIBUTION = "orch"
EXTRA = "worker"


@dataclass(frozen=True)
class WorkerIdentity:
    """Which worker a host runs: orch's version and a sha256 of the package's files."""

    version: str
    content_hash: str

    @property
    def folder(self) -> str:
        """The folder name under `<remote_dir>/worker/`."""
        return self.content_hash[:16]

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def package_dir() -> Path:
    """The installed `gpu_worker` package's folder."""
    spec = importlib.util.find_spec("gpu_worker")
    if spec is None or not spec.submodule_search_locations:
        raise OrchError("the gpu_worker package of this orch is missing; reinstall orch")
    return Path(next(iter(spec.submodule_search_locations)))


def package_files() -> list[str]:
    """The package's files (relative POSIX paths under `gpu_worker/`), bytecode left out."""
    root = package_dir()
    return sorted(
        p.relative_to(root.parent).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def _version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "source"


@functools.lru_cache(maxsize=1)
def identity() -> WorkerIdentity:
    """This orch's worker identity (computed once per process)."""
    base = package_dir().parent
    h = hashlib.sha256()
    for rel in package_files():
        h.update(rel.encode() + b"\0" + hashlib.sha256((base / rel).read_bytes()).digest())
    return WorkerIdentity(_version(), h.hexdigest())


def worker_dir(remote_dir: str) -> shell.Quoted:
    """`<remote_dir>/worker/<hash>`, quoted: the folder the job puts on PYTHONPATH."""
    return shell.remote(remote_dir, WORKER_DIR, identity().folder)


def _tarball() -> bytes:
    base, ident = package_dir().parent, identity()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in package_files():
            tar.add(base / rel, arcname=rel, recursive=False)
        data = json.dumps(ident.to_json()).encode()
        info = tarfile.TarInfo(WORKER_FILE)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ship(host: Host) -> WorkerIdentity:
    """Make sure the host has this orch's worker; its identity."""
    ident = identity()
    dest = worker_dir(host.remote_dir)
    marker = shell.remote(host.remote_dir, WORKER_DIR, ident.folder, WORKER_FILE)
    if host.run(shell.trusted(f"[ -f {marker} ]"), check=False).exit_code == 0:
        return ident
    parent = shell.remote(host.remote_dir, WORKER_DIR)
    script = shell.trusted(f"""set -e
mkdir -p {parent}
tmp={parent}/.incoming-$$
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp" && tar -xz --no-same-owner -f - -C "$tmp"
mv -T "$tmp" {dest} 2>/dev/null || [ -f {marker} ]
""")
    host.run(script, stdin=_tarball(), timeout=max(host.config.timeout, 120.0))
    return ident


def requirements() -> list[str]:
    """The `worker` extra's requirements from orch's own package metadata: the installed
    distribution's, else (orch run from a source checkout) its setup.cfg."""
    try:
        reqs = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return _source_requirements()
    marker = re.compile(r"""extra\s*==\s*['"]""" + EXTRA + """['"]""")
    return [r.split(";")[0].strip() for r in reqs if marker.search(r.partition(";")[2])]


def _source_requirements() -> list[str]:
    path = package_dir().parent / "setup.cfg"
    parser = configparser.ConfigParser()
    parser.read(path, encoding="utf-8")
    try:
        raw = parser["options.extras_require"][EXTRA]
    except KeyError:
        raise OrchError(f"{path}: extras_require.{EXTRA}: missing; reinstall orch") from None
    return [line.strip() for line in raw.splitlines() if line.strip()]
