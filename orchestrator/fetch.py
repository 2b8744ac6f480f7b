"""`orch fetch`: bring a finished run's files to `results/<run_id>/`, validated, atomically.

The host sends the run's files as one tar stream; they are unpacked into a temporary folder next
to the destination, results.json is checked against the contract schema, and only then is the
folder renamed into place. A corrupt results.json, a cut connection or an interrupt leaves nothing
behind (a lost link is outcome "unreachable", exit 3). A failed run's log is still fetched.
A `command:` job's results.json is optional (validated when present); `--outputs` is
`artifacts.py`. Only a run whose exit code is written is fetched (and marked fetched for good):
a run being cancelled or one that is lost is reported, not copied half-way. Re-fetching is a
no-op. A run
whose folder vanished from its host is `gone`: skipped with the `orch forget` hint, so it never
blocks the others (named on the command line, it is an error).

The archive is streamed to a file in that temporary folder, never held in memory, and a run whose
files are larger than orch.yaml's `fetch: {max_mb: ...}` (default 4096) is refused, compressed
or unpacked, with an error naming the limit.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpu_worker.contract.schema import SchemaError, loads_bounded, validate_results

from . import fetchlock
from .backends import FETCH_FILES
from .config import Config
from .errors import HostUnreachable, OrchError
from .hosts import Hosts, scoped
from .jobs import collect_status, run_host, unknown_host
from .records import RunRecord, check_run_id, find_record, load_records, save_record
from .scripts import run_dir
from .shell import join, trusted
from .states import FINISHED, FetchOutcome, RunState, worst_exit
from .transport import Host

FILES = FETCH_FILES  # the same on every backend
MB = 1 << 20
ARCHIVE = ".archive.tar.gz"
TAR_FAILED = "orch-fetch: tar failed"
log = logging.getLogger("orchestrator")


@dataclass(frozen=True)
class FetchResult:
    """What happened to one run: fetched, already there, skipped (still running) or error."""

    run_id: str
    outcome: FetchOutcome
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


@dataclass(frozen=True)
class FetchReport:
    """What `orch fetch` did: one result per run and merged parent, and the outputs fetched
    (`artifacts.OutputsResult`). Exit 1 when a run could not be fetched, else 3 when a host did
    not answer, else 0 (from `FetchOutcome.exit_code`)."""

    results: list[FetchResult]
    outputs: list = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The command's exit code (see the class docstring)."""
        return worst_exit(FetchOutcome(r.outcome).exit_code for r in self.results)

    def to_json(self) -> list[dict]:
        """A JSON-ready list: the runs, then the outputs."""
        return [r.to_json() for r in [*self.results, *self.outputs]]


def _too_big(run_id: str, what: str, max_mb: float) -> OrchError:
    return OrchError(
        f"{run_id}: the run's files are larger than fetch.max_mb ({max_mb:g} MB) {what}; "
        "raise it in orch.yaml; nothing was written"
    )


def local_error(run_id: str, path: Path, exc: OSError) -> OrchError:
    """A local write that failed (a full disk): exit 1, naming the local path."""
    where = exc.filename or path
    return OrchError(f"{run_id}: cannot write {where}: {exc.strerror or exc}; nothing was written")


def _download(host: Host, run_id: str, archive: Path, max_mb: float) -> None:
    """Stream the run's files as a tar.gz into `archive`; refuse more than `max_mb`."""
    limit = int(max_mb * MB)
    d, files = run_dir(host.config, run_id), join(FILES)
    # The host stops after limit+1 bytes (`head -c`), so an oversized run costs no more than that;
    # head's exit status hides tar's, so a tar failure is said on stderr.
    command = trusted(
        f"cd {d} && {{ ls -d {files} 2>/dev/null | tr '\\n' '\\0' | xargs -0 tar -cz -- "
        f"|| echo '{TAR_FAILED}' >&2; }} | head -c {int(limit) + 1}"
    )
    size = 0
    with archive.open("wb") as out:

        def write(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size <= limit:
                try:
                    out.write(chunk)
                except OSError as exc:  # said as a local error, not as the link's
                    raise local_error(run_id, archive, exc) from None

        res = host.run(command, timeout=max(host.config.timeout, 600.0), on_stdout=write)
    if size > limit:
        raise _too_big(run_id, "(compressed)", max_mb)
    if TAR_FAILED.encode() in res.stderr:
        tail = " | ".join(res.stderr.decode("utf-8", "replace").strip().splitlines()[-3:])
        raise OrchError(f"{run_id}: packing the run's files on {host.name} failed: {tail}")


def _unpack(archive: Path, dest: Path, run_id: str, max_mb: float) -> list[str]:
    """Extract the expected plain files only; anything else in the stream is an error, and so
    is more than `max_mb` unpacked."""
    try:
        return _extract(archive, dest, run_id, max_mb)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise OrchError(
            f"{run_id}: the fetched archive is unreadable ({exc}); nothing was written"
        ) from None


def _extract(archive: Path, dest: Path, run_id: str, max_mb: float) -> list[str]:
    names, total, limit = [], 0, int(max_mb * MB)
    with tarfile.open(archive, mode="r:gz") as tar:
        for member in tar:
            if member.name not in FILES or not member.isfile():
                raise OrchError(f"unexpected entry '{member.name}' in the fetched archive")
            total += member.size
            if total > limit:
                raise _too_big(run_id, "(unpacked)", max_mb)
            src = tar.extractfile(member)
            with (dest / member.name).open("wb") as out:
                if src is not None:
                    shutil.copyfileobj(src, out, MB)
            names.append(member.name)
    return sorted(names)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fetch_run(
    config: Config,
    record: RunRecord,
    state: str,
    log_tail: list[str],
    results_required: bool = True,
    hosts: Hosts | None = None,
) -> FetchResult:
    """Copy one finished run into results/<run_id>/ (see the module docstring), holding the
    run's fetch lock (orchestrator/fetchlock.py): a second fetch of the run waits for the first.
    A `command:` job (`results_required` false) may have no results.json. `hosts`: the
    command's connections (None: this call's own)."""
    dest = results_dir(config) / check_run_id(record.run_id)
    if dest.exists():
        return FetchResult(record.run_id, FetchOutcome.ALREADY, state, str(dest))

    def waiting() -> None:
        log.warning("%s: already being fetched by another orch fetch; waiting", record.run_id)

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise local_error(record.run_id, dest.parent, exc) from None
    with fetchlock.run_lock(dest.parent, record.run_id, on_wait=waiting):
        if dest.exists():  # the fetch we waited for brought it
            return FetchResult(record.run_id, FetchOutcome.ALREADY, state, str(dest))
        with scoped(config, hosts) as own:
            return _fetch_locked(config, record, state, log_tail, dest, results_required, own)


def _fetch_locked(
    config: Config,
    record: RunRecord,
    state: str,
    log_tail: list[str],
    dest: Path,
    results_required: bool,
    hosts: Hosts,
) -> FetchResult:
    try:
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{record.run_id}.fetch-"))
    except OSError as exc:
        raise local_error(record.run_id, dest.parent, exc) from None
    try:
        host = hosts.open(run_host(config, record, hosts))
        _download(host, record.run_id, tmp / ARCHIVE, config.fetch_max_mb)
        names = _unpack(tmp / ARCHIVE, tmp, record.run_id, config.fetch_max_mb)
        (tmp / ARCHIVE).unlink()
        if "results.json" in names:
            try:
                validate_results(loads_bounded((tmp / "results.json").read_bytes()))
            except (UnicodeDecodeError, SchemaError) as exc:
                raise OrchError(
                    f"{record.run_id}: results.json on {record.host} is invalid ({exc}); "
                    "nothing was written"
                ) from None
        elif state == "succeeded" and results_required:
            raise OrchError(f"{record.run_id}: no results.json on {record.host}")
        record.fetched = True
        (tmp / "orch-run.json").write_text(json.dumps(asdict(record), indent=1))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; results are shared like any folder
        tmp.rename(dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise local_error(record.run_id, tmp, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    save_record(config, record)
    return FetchResult(record.run_id, FetchOutcome.FETCHED, state, str(dest), names, log_tail)


def fetch(
    config: Config, run_ids: tuple[str, ...] = (), hosts: Hosts | None = None
) -> list[FetchResult]:
    """Fetch the named runs, or every finished run not yet fetched, over one connection per
    host (`hosts`: the command's; None: this call's own)."""
    with scoped(config, hosts) as own:
        return _fetch(config, run_ids, own)


def _fetch(config: Config, run_ids: tuple[str, ...], hosts: Hosts) -> list[FetchResult]:
    if run_ids:
        records = [find_record(config, r) for r in run_ids]
    else:
        records = [r for r in load_records(config) if not r.fetched and not r.error]
        records = [r for r in records if unknown_host(hosts, r.host) is None]  # warned
    if not records:
        return []
    fetchlock.sweep(results_dir(config))  # temp folders of fetches killed earlier
    asked = [r.run_id for r in records]
    statuses = {s.run_id: s for s in collect_status(config, asked, hosts=hosts)}
    out = []
    for rec in load_records(config):  # reload: collect_status updated the records
        if rec.run_id not in {r.run_id for r in records}:
            continue
        s = statuses.get(rec.run_id)
        if rec.error:
            out.append(FetchResult(rec.run_id, FetchOutcome.ERROR, rec.state, error=rec.error))
            continue
        if s is None or s.state == RunState.GONE:  # its folder vanished from the host (or an
            # interrupted launch never made one): skipped with the hint, so the others are fetched
            why = f"not found on {rec.host}; `orch forget {rec.run_id}` drops its record"
            gone = FetchOutcome.ERROR if run_ids else FetchOutcome.GONE
            out.append(FetchResult(rec.run_id, gone, f"last seen {rec.state}", error=why))
            continue
        if not s.reachable:
            out.append(FetchResult(rec.run_id, FetchOutcome.UNREACHABLE, s.state, error=s.note))
        elif s.state not in FINISHED:
            out.append(FetchResult(rec.run_id, FetchOutcome.STILL_RUNNING, s.state))
        elif s.exit_code is None:
            why = "no exit code (job killed or host rebooted); `orch run --resume` continues it"
            out.append(FetchResult(rec.run_id, FetchOutcome.NOT_FINAL, s.state, error=why))
        else:
            try:
                out.append(fetch_run(config, rec, s.state, s.log_tail, not s.own_command, hosts))
            except HostUnreachable as exc:
                out.append(
                    FetchResult(rec.run_id, FetchOutcome.UNREACHABLE, s.state, error=str(exc))
                )
            except OrchError as exc:
                out.append(FetchResult(rec.run_id, FetchOutcome.ERROR, s.state, error=str(exc)))
    return out
