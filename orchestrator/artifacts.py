"""`orch fetch RUN --outputs [GLOB]`: bring back the files a run wrote under its playbook's
`outputs:` (checkpoints, say) into `results/<run_id>/outputs/`.

The run lists its outputs with their sizes in run.json when it ends (`scripts.list_outputs`);
only listed files matching GLOB (fnmatch on the path relative to the run folder, default every
file) are fetched. Files already here with the listed size are complete and not sent again, so
an interrupted fetch resumes where it stopped. The rest is refused when larger than
`fetch.max_mb`. Files travel as tar.gz streams of at most CHUNK_MB each, unpacked into a
temporary folder and renamed into place only once the chunk is whole: a cut link or a bad archive
leaves no partial file behind, only the complete ones of earlier chunks.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from .config import Config
from .errors import OrchError
from .fetch import MB, results_dir
from .records import RunRecord, check_run_id, find_record
from .scripts import run_dir
from .shell import trusted
from .transport import Host, open_host

CHUNK_MB = 256
OUTPUTS_DIR = "outputs"


@dataclass(frozen=True)
class OutputFile:
    """One listed output: its path in the run folder and its size in bytes."""

    path: str
    size: int


@dataclass(frozen=True)
class OutputsResult:
    """What `fetch_outputs` did: files sent, files already complete here, bytes sent."""

    run_id: str
    path: str
    fetched: int
    complete: int
    bytes: int

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def listed_outputs(host: Host, run_id: str) -> list[OutputFile]:
    """The outputs run.json lists on the host (empty: none listed yet)."""
    res = host.run(trusted(f"cat {run_dir(host.config, run_id)}/run.json"))
    try:
        doc = json.loads(res.text)
    except json.JSONDecodeError as exc:
        raise OrchError(f"{run_id}: run.json on {host.name} is not JSON ({exc.msg})") from None
    out = []
    for item in doc.get("outputs") or []:
        path, size = item.get("path"), item.get("size")
        parts = PurePosixPath(str(path)).parts
        if not isinstance(path, str) or path.startswith("/") or ".." in parts:
            raise OrchError(f"{run_id}: run.json lists an unsafe output path {path!r}")
        if not isinstance(size, int) or size < 0:
            raise OrchError(f"{run_id}: run.json: output {path}: size {size!r} is not a size")
        out.append(OutputFile(path, size))
    return out


def _complete(dest: Path, item: OutputFile) -> bool:
    local = dest / item.path
    return local.is_file() and local.stat().st_size == item.size


def _chunks(files: list[OutputFile]) -> list[list[OutputFile]]:
    """Consecutive groups of about CHUNK_MB each (a bigger file travels alone)."""
    groups: list[list[OutputFile]] = [[]]
    size = 0
    for item in files:
        if groups[-1] and size + item.size > CHUNK_MB * MB:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += item.size
    return [g for g in groups if g]


def _download(host: Host, run_id: str, files: list[OutputFile], dest: Path) -> int:
    """One chunk: stream it, unpack it next to `dest`, check it, rename each file into place."""
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{OUTPUTS_DIR}-fetch-"))
    try:
        archive = tmp / ".archive.tar.gz"
        names = b"".join(f.path.encode() + b"\0" for f in files)
        command = trusted(f"cd {run_dir(host.config, run_id)} && tar -cz --null -T -")
        limit, got = int(sum(f.size for f in files) * 1.1) + MB, 0
        with archive.open("wb") as out:

            def write(chunk: bytes) -> None:
                nonlocal got
                got += len(chunk)
                if got <= limit:
                    out.write(chunk)

            host.run(command, stdin=names, timeout=max(host.config.timeout, 600.0), on_stdout=write)
        if got > limit:
            raise OrchError(f"{run_id}: the host sent more than the listed outputs; nothing kept")
        _unpack(archive, tmp / "files", {f.path: f.size for f in files}, run_id)
        for item in files:
            target = dest / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / "files" / item.path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sum(f.size for f in files)


def _unpack(archive: Path, into: Path, sizes: dict[str, int], run_id: str) -> None:
    """Extract exactly the asked-for plain files, each of its listed size."""
    seen = set()
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                name = member.name
                if name not in sizes or not member.isfile() or member.size != sizes[name]:
                    raise OrchError(f"{run_id}: unexpected entry '{name}' in the outputs archive")
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                with target.open("wb") as out:
                    if src is not None:
                        shutil.copyfileobj(src, out, MB)
                seen.add(name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise OrchError(f"{run_id}: the outputs archive is unreadable ({exc})") from None
    missing = sorted(set(sizes) - seen)
    if missing:
        raise OrchError(f"{run_id}: outputs missing on the host: {', '.join(missing[:3])}")


def fetch_outputs(config: Config, record: RunRecord, pattern: str = "*") -> OutputsResult:
    """Fetch `record`'s listed outputs matching `pattern` (see the module docstring)."""
    dest = results_dir(config) / check_run_id(record.run_id) / OUTPUTS_DIR
    with open_host(config.host(record.host)) as host:
        listed = listed_outputs(host, record.run_id)
        if not listed:
            raise OrchError(
                f"{record.run_id}: no outputs listed in its run.json (a playbook's `outputs:` "
                "are listed when the run ends)"
            )
        wanted = [f for f in listed if fnmatch.fnmatch(f.path, pattern)]
        if not wanted:
            raise OrchError(f"{record.run_id}: no output matches '{pattern}'")
        missing = [f for f in wanted if not _complete(dest, f)]
        size = sum(f.size for f in missing)
        if size > config.fetch_max_mb * MB:
            raise OrchError(
                f"{record.run_id}: the outputs to fetch are {size / MB:.1f} MB, more than "
                f"fetch.max_mb ({config.fetch_max_mb:g} MB); raise it in orch.yaml or narrow "
                "the GLOB; nothing was written"
            )
        sent = sum(_download(host, record.run_id, chunk, dest) for chunk in _chunks(missing))
    return OutputsResult(record.run_id, str(dest), len(missing), len(wanted) - len(missing), sent)


def fetch_named(config: Config, run_ids: tuple[str, ...], pattern: str) -> list[OutputsResult]:
    """`orch fetch RUN... --outputs GLOB`: `fetch_outputs` of each named run."""
    return [fetch_outputs(config, find_record(config, rid), pattern) for rid in run_ids]
