"""The verbs over a run's backend: launch (push, then submit), status across hosts in
parallel, and cancel (a run's log: `follow.stream_log`).

Run records live in `records.py`, the scripts sent to hosts in `scripts.py` (and the backends),
the status output's parsing and the states in `status.py`. A host that does not answer is
"unreachable", shown beside the last state seen and listed in the status report even when no run
is known for it; it is never turned into a job failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from gpu_worker.contract.layout import CodeIdentity

from .backends import Launch, Options, SubmitRefused, backend_for
from .config import Config, HostConfig
from .errors import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    ConfigError,
    HostUnreachable,
    JobNotFound,
    OrchError,
)
from .follow import stream_log  # noqa: F401 - moved there; kept importable from here
from .hosts import Hosts, scoped
from .notify import notify_ended
from .playbooks import Resolved
from .records import (
    RunRecord,
    check_run_id,
    drop_record,
    find_record,
    load_records,
    new_run_id,
    save_record,
)
from .scripts import resolve_dir_script
from .states import FINISHED, CancelOutcome, RunState
from .status import RunStatus
from .sync import push
from .transport import Host

DEFAULT_OPTIONS = Options()
log = logging.getLogger("orchestrator")


def launch(
    config: Config,
    host: Host,
    runs: list[tuple[str, Resolved]],
    options: Options = DEFAULT_OPTIONS,
    *,
    on_push: Callable | None = None,
    resume: bool = False,
    parent: str | None = None,
) -> list[RunRecord]:
    """Push, then start the resolved playbooks (`(run_id, playbook)` pairs) in one submission
    through the host's backend (tmux or Slurm; several runs on Slurm: one job array), and save
    their records. The only launch: single runs, shards and resumes all come through here.

    `resume` re-starts existing runs in their folders, continuing their predictions; `parent`
    marks the runs as shards of a sharded run (see `orchestrator/shards.py`).
    """
    if resume and any(book.own_command and not book.train for _, book in runs):
        raise ConfigError(
            f"run {runs[0][0]}: its playbook has its own `command:`; only gpu_worker runs resume"
        )
    pin_remote_dir(host)
    pushed = push(config, host)
    if on_push is not None:
        on_push(pushed)
    after = options.after.run_id if options.after else None
    launches = [
        Launch(new_record(host, book, run_id, pushed.identity, parent, after), book, resume)
        for run_id, book in runs
    ]
    if not resume:  # recorded before anything starts: no job without a record (a resumed run
        for launch_ in launches:  # keeps the record it has until it starts again)
            save_pending(config, launch_.record)
    try:
        records = backend_for(host.config).submit(host, launches, options)
    except BaseException as exc:
        if not resume:
            for launch_ in launches:
                submit_failed(config, launch_.record, exc)
        raise
    for record in records:
        save_record(config, record)
    return records


def launch_one(
    config: Config,
    host: Host,
    book: Resolved,
    options: Options = DEFAULT_OPTIONS,
    *,
    on_push: Callable | None = None,
    run_id: str | None = None,
    resume: bool = False,
    parent: str | None = None,
) -> RunRecord:
    """`launch` of one run (a new id unless `run_id`)."""
    runs = [(run_id or new_run_id(book.name), book)]
    return launch(config, host, runs, options, on_push=on_push, resume=resume, parent=parent)[0]


def save_pending(config: Config, record: RunRecord) -> None:
    """Write the record of a run about to start; a local write error stops the launch."""
    try:
        save_record(config, record)
    except OrchError as exc:
        raise OrchError(f"{exc}; nothing was started on {record.host}") from None


def submit_failed(config: Config, record: RunRecord, exc: BaseException) -> None:
    """Settle the pending record of a submission that raised `exc`: a scheduler's refusal is
    recorded as failed; an unanswered host or an interrupt keeps it (the job may have started);
    any other error started nothing (the launch script cleaned up), so the record goes."""
    if isinstance(exc, SubmitRefused):
        record.state, record.error = RunState.FAILED, str(exc)
        save_record(config, record)
    elif isinstance(exc, OrchError) and not isinstance(exc, HostUnreachable):
        drop_record(config, record.run_id)


def pin_remote_dir(host: Host) -> None:
    """Resolve the host's `remote_dir` to an absolute path, on the host, once (a relative one,
    such as the default `orch` of a host known only from ~/.ssh/config, or `~/x`): every script
    of the run is then built with that path, so a job that `cd`s into its code still writes its
    log and exit code in its run folder."""
    if host.config.remote_dir.startswith("/"):
        return
    res = host.run(resolve_dir_script(host.config))
    found = res.text.strip().splitlines()[-1:] or [""]
    if not found[0].startswith("/"):
        raise OrchError(
            f"{host.name}: remote_dir {host.config.remote_dir!r} did not resolve to an absolute "
            f"path (got {found[0][:80]!r}); set hosts.{host.name}.remote_dir in orch.yaml"
        )
    host.config = replace(host.config, remote_dir=found[0])


def run_host(config: Config, record: RunRecord, hosts: Hosts | None = None) -> HostConfig:
    """The host configuration for one run: its host, with the absolute remote_dir the run was
    started in (a record made before runs kept it: the configured one)."""
    host = hosts.host(record.host) if hosts is not None else config.host(record.host)
    return replace(host, remote_dir=record.remote_dir) if record.remote_dir else host


def new_record(
    host: Host,
    book: Resolved,
    run_id: str,
    identity: CodeIdentity,
    parent: str | None = None,
    after: str | None = None,
) -> RunRecord:
    """The local record of a run about to start on `host`."""
    shard = (book.doc.get("data") or {}).get("shard")
    count = (book.doc.get("data") or {}).get("num_shards")
    return RunRecord(
        run_id=check_run_id(run_id),
        host=host.name,
        playbook=book.name,
        playbook_file=book.file or None,
        started_at=time.time(),
        overrides=list(book.overrides),
        code=identity,
        hourly_rate=host.config.hourly_rate,
        backend=host.config.backend,
        parent=parent,
        shard=shard if count else None,
        num_shards=count,
        remote_dir=host.config.remote_dir,
        after=after,
        notify_pending=True,
    )


def host_status(host: Host, run_ids: list[str] | None) -> list[RunStatus]:
    """One round trip: the status of the named runs (or all runs) on one host."""
    return backend_for(host.config).poll(host, run_ids)


@dataclass(frozen=True)
class StatusReport:
    """Every run seen (or last seen), and the hosts that did not answer: name -> why."""

    runs: list[RunStatus]
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """3 when a host asked did not answer, else 0."""
        return EXIT_UNREACHABLE if self.unreachable else EXIT_OK


def collect_status(
    config: Config,
    run_ids: Iterable[str] = (),
    host_name: str | None = None,
    hosts: Hosts | None = None,
) -> list[RunStatus]:
    """The runs of `collect_status_report` (for callers that need only those)."""
    return collect_status_report(config, run_ids, host_name, hosts).runs


def collect_status_report(
    config: Config,
    run_ids: Iterable[str] = (),
    host_name: str | None = None,
    hosts: Hosts | None = None,
) -> StatusReport:
    """Status of the named runs, or all runs on `host_name`, or all recorded runs.

    Hosts are asked in parallel, one SSH round trip each, each bounded by its timeout. Local
    records are updated with what was seen; runs found on a host without a local record are
    adopted. A host that does not answer is listed in `unreachable` even when no run is known
    for it. `hosts`: the command's connections (None: this call's own).
    """
    with scoped(config, hosts) as own:
        return _status_report(config, run_ids, host_name, own)


def _status_report(
    config: Config, run_ids: Iterable[str], host_name: str | None, hosts: Hosts
) -> StatusReport:
    records = {r.run_id: r for r in load_records(config)}
    # Runs are asked for where they were started: (host, its absolute remote_dir) (see run_host).
    wanted: dict[tuple[str, str | None], list[str] | None] = {}
    never: list[RunStatus] = []  # runs the scheduler refused: their record is all there is
    chosen = [find_record(config, rid) for rid in run_ids]
    if host_name and not chosen:
        wanted[(hosts.host(host_name).name, None)] = None
    for rec in chosen or ([] if host_name else list(records.values())):
        if rec.error:
            never.append(_never_started(rec))
        elif (why := unknown_host(hosts, rec.host)) is not None:
            never.append(_never_started(rec, why))
        else:
            wanted.setdefault((rec.host, rec.remote_dir), []).append(rec.run_id)

    unreachable: dict[str, str] = {}

    def ask(key: tuple[str, str | None]) -> list[RunStatus]:
        name, remote_dir = key
        ids = wanted[key]
        host_cfg = hosts.host(name)
        if remote_dir:
            host_cfg = replace(host_cfg, remote_dir=remote_dir)
        try:
            seen = host_status(hosts.open(host_cfg), ids)
            return seen + _gone(name, ids, seen, records)
        except HostUnreachable as exc:  # a ConfigError is the user's to fix: exit 2
            unreachable[name] = str(exc)
            known = [
                r for r in records.values() if r.host == name and (ids is None or r.run_id in ids)
            ]
            return [
                RunStatus(
                    run_id=r.run_id,
                    host=name,
                    playbook=r.playbook,
                    state=r.state,
                    reachable=False,
                    note=str(exc),
                    read_at=time.time(),
                )
                for r in known
            ]

    with ThreadPoolExecutor(max(1, len(wanted))) as pool:
        results = [s for batch in pool.map(ask, list(wanted)) for s in batch]
    for s in results:
        if s.reachable and s.state != RunState.GONE:  # a gone run keeps its last seen state
            _remember(config, records.get(s.run_id), s)
    notify_ended(config, results, records)
    results += never
    order = {rid: r.started_at for rid, r in records.items()}
    runs = sorted(results, key=lambda s: (order.get(s.run_id, 0), s.run_id))
    return StatusReport(runs, dict(sorted(unreachable.items())))


def _gone(
    host: str, asked: list[str] | None, seen: list[RunStatus], records: dict[str, RunRecord]
) -> list[RunStatus]:
    """The runs asked for by id that the host answered without: their folder is gone."""
    found = {s.run_id for s in seen}
    return [
        RunStatus(
            run_id=rid,
            host=host,
            playbook=records[rid].playbook if rid in records else "",
            state=RunState.GONE,
            note=f"its folder is gone from {host}; `orch forget {rid}` drops its record",
            read_at=time.time(),
        )
        for rid in asked or ()
        if rid not in found
    ]


RECORD_REFRESH_S = 60.0


def unknown_host(hosts: Hosts | Config, name: str) -> str | None:
    """Why `name` cannot be asked (a host removed from orch.yaml), said once per command as a
    warning; None when it is known (`hosts`: the command's, or a Config)."""
    try:
        hosts.host(name)
    except ConfigError as exc:
        why = f"unknown host '{name}' (last seen state shown)"
        if name not in _warned_hosts:
            _warned_hosts.add(name)
            log.warning("%s; its runs are skipped", str(exc).split(";")[0])
        return why
    return None


_warned_hosts: set[str] = set()


def _never_started(record: RunRecord, note: str = "") -> RunStatus:
    """A run's status from its record alone: the scheduler refused it, or its host is no
    longer known (`note`)."""
    return RunStatus(
        run_id=record.run_id,
        host=record.host,
        playbook=record.playbook,
        state=record.state,
        note=note or record.error or "",
        read_at=time.time(),
        parent=record.parent,
        shard=record.shard,
    )


def _remember(config: Config, record: RunRecord | None, s: RunStatus) -> None:
    """Update the local record with what was seen (written only when something changed, or
    `last_seen_at` is older than RECORD_REFRESH_S: status is read far more often than it moves)."""
    if record is None:
        record = RunRecord(  # adopted (a fresh clone): what the host's run.json says
            run_id=s.run_id, host=s.host, playbook=s.playbook, started_at=time.time()
        )
        record.parent, record.shard, record.after = s.parent, s.shard, s.after
        if s.elapsed_s is not None:
            record.started_at = s.read_at - s.elapsed_s
    elif (record.state, record.exit_code) == (s.state, s.exit_code) and (
        s.read_at - (record.last_seen_at or 0) < RECORD_REFRESH_S
    ):
        return
    record.state, record.last_seen_at, record.exit_code = s.state, s.read_at, s.exit_code
    if s.state in FINISHED and s.elapsed_s is not None:
        record.ended_at = record.started_at + s.elapsed_s
    save_record(config, record)


# -- cancel (logs: follow.stream_log) --------------------------------------------------------


def cancel(
    config: Config, record: RunRecord, grace: float = 10.0, hosts: Hosts | None = None
) -> CancelOutcome:
    """Stop the job: SIGINT, then SIGTERM, then SIGKILL, each after `grace` seconds; mark it.
    `hosts`: the command's connections (None: this call's own)."""
    with scoped(config, hosts) as own:
        host = own.open(run_host(config, record, own))
        outcome = backend_for(host.config).cancel(host, record.run_id, grace)
    if outcome == CancelOutcome.MISSING:
        raise JobNotFound(f"run {record.run_id} not found on {record.host}")
    if outcome == CancelOutcome.CANCELLED:
        record.state = RunState.CANCELLED
        record.ended_at = time.time()
        save_record(config, record)
    return outcome
