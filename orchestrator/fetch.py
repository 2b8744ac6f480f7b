"""`orch fetch`: bring a finished run's files to `results/<run_id>/`, validated, atomically.

The host sends the run's files as one tar stream; they are unpacked into a temporary folder next
to the destination, results.json is checked against `gpu_worker/schema.py`, and only then is the
folder renamed into place. A corrupt results.json, a cut connection or an interrupt leaves nothing
behind (a lost link is outcome "unreachable", exit 3). A failed run's log is still fetched.
Only a run whose exit code is written is fetched (and marked fetched for good): a run being
cancelled or one that is lost is reported, not copied half-way. Re-fetching is a no-op.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpu_worker.schema import SchemaError, validate_results

from .backends import FETCH_FILES
from .config import Config
from .errors import HostUnreachable, JobNotFound, OrchError
from .jobs import (
    FINISHED,
    RunRecord,
    check_run_id,
    collect_status,
    find_record,
    load_records,
    run_dir,
    save_record,
)
from .shell import join, trusted
from .transport import open_host

FILES = FETCH_FILES  # the same on every backend
MAX_BYTES = 4 << 30


@dataclass(frozen=True)
class FetchResult:
    """What happened to one run: fetched, already there, skipped (still running) or error."""

    run_id: str
    outcome: str
    state: str
    path: str | None = None
    files: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def results_dir(config: Config) -> Path:
    """The folder holding one sub-folder per fetched run."""
    return (config.root / config.defaults.results_dir).resolve()


def _unpack(data: bytes, dest: Path) -> list[str]:
    """Extract the expected plain files only; anything else in the stream is an error."""
    names = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            if member.name not in FILES or not member.isfile():
                raise OrchError(f"unexpected entry '{member.name}' in the fetched archive")
            src = tar.extractfile(member)
            (dest / member.name).write_bytes(src.read() if src else b"")
            names.append(member.name)
    return sorted(names)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fetch_run(config: Config, record: RunRecord, state: str, log_tail: list[str]) -> FetchResult:
    """Copy one finished run into results/<run_id>/ (see the module docstring)."""
    dest = results_dir(config) / check_run_id(record.run_id)
    if dest.exists():
        return FetchResult(record.run_id, "already fetched", state, str(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open_host(config.host(record.host)) as host:
        d, files = run_dir(host.config, record.run_id), join(FILES)
        res = host.run(
            trusted(f"cd {d} && ls -d {files} 2>/dev/null | tr '\\n' '\\0' | xargs -0 tar -cz --"),
            timeout=max(host.config.timeout, 600.0),
        )
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{record.run_id}.fetch-"))
    try:
        names = _unpack(res.stdout, tmp)
        if "results.json" in names:
            try:
                validate_results(json.loads((tmp / "results.json").read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError, SchemaError) as exc:
                raise OrchError(
                    f"{record.run_id}: results.json on {record.host} is invalid ({exc}); "
                    "nothing was written"
                ) from None
        elif state == "succeeded":
            raise OrchError(f"{record.run_id}: no results.json on {record.host}")
        record.fetched = True
        (tmp / "orch-run.json").write_text(json.dumps(asdict(record), indent=1))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; results are shared like any folder
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    save_record(config, record)
    return FetchResult(record.run_id, "fetched", state, str(dest), names, log_tail)


def fetch(config: Config, run_ids: tuple[str, ...] = ()) -> list[FetchResult]:
    """Fetch the named runs, or every finished run not yet fetched."""
    if run_ids:
        records = [find_record(config, r) for r in run_ids]
    else:
        records = [r for r in load_records(config) if not r.fetched]
    if not records:
        return []
    statuses = {s.run_id: s for s in collect_status(config, [r.run_id for r in records])}
    out = []
    for rec in load_records(config):  # reload: collect_status updated the records
        if rec.run_id not in {r.run_id for r in records}:
            continue
        s = statuses.get(rec.run_id)
        if s is None:
            raise JobNotFound(f"run {rec.run_id} not found on {rec.host}")
        if not s.reachable:
            out.append(FetchResult(rec.run_id, "unreachable", s.state, error=s.note))
        elif s.state not in FINISHED:
            out.append(FetchResult(rec.run_id, "still running", s.state))
        elif s.exit_code is None:
            why = "no exit code (job killed or host rebooted); `orch run --resume` continues it"
            out.append(FetchResult(rec.run_id, "not final", s.state, error=why))
        else:
            try:
                out.append(fetch_run(config, rec, s.state, s.log_tail))
            except HostUnreachable as exc:
                out.append(FetchResult(rec.run_id, "unreachable", s.state, error=str(exc)))
            except OrchError as exc:
                out.append(FetchResult(rec.run_id, "error", s.state, error=str(exc)))
    return out
