"""The verbs over a run's backend: launch (push, then submit), status across hosts in
parallel, cancel, and following logs.

Run records live in `records.py`, the scripts sent to hosts in `scripts.py` (and the backends),
the status output's parsing and the states in `status.py`. A host that does not answer is
"unreachable", shown beside the last state seen and listed in the status report even when no run
is known for it; it is never turned into a job failure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from .backends import Launch, backend_for
from .config import Config, HostConfig
from .errors import ConfigError, HostKeyError, HostUnreachable, JobNotFound
from .playbooks import Playbook
from .records import (
    RunRecord,
    check_run_id,
    find_record,
    load_records,
    new_run_id,
    save_record,
)
from .scripts import (
    job_command,
    log_follow_script,
    log_tail_script,
    precheck_script,
)
from .states import FINISHED, CancelOutcome, RunState
from .status import RunStatus
from .sync import CodeIdentity, push
from .transport import Host, open_host


def launch(
    config: Config,
    host: Host,
    playbook: Playbook,
    *,
    allow_concurrent: bool = False,
    on_push: Callable | None = None,
    run_id: str | None = None,
    resume: bool = False,
    parent: str | None = None,
) -> RunRecord:
    """Push, then start the resolved playbook through the host's backend (tmux or Slurm).

    `run_id` and `resume` re-start an existing run in its folder, continuing its predictions;
    `parent` marks the run as one shard of a sharded run (see `orchestrator/shards.py`).
    """
    if resume and "command" in playbook.data:
        raise ConfigError(
            f"run {run_id}: its playbook has its own `command:`; only gpu_worker runs resume"
        )
    pushed = push(config, host)
    if on_push is not None:
        on_push(pushed)
    record = new_record(host, playbook, run_id or new_run_id(playbook.name), pushed.identity)
    record.parent = parent
    command = job_command(playbook.command, resume=resume)
    # need not use the worker's `run` (a `command:` or a `train:` playbook): nothing to check
    own_command = "command" in playbook.data or "train" in playbook.data
    launch = Launch(
        record.run_id,
        playbook.to_yaml(),
        {**remote_record(record), "resume": resume},
        precheck="" if resume or own_command else precheck_script(host.config),
    )
    backend = backend_for(host.config)
    record.job_id = backend.submit(host, [launch], command, allow_concurrent)[0]
    save_record(config, record)
    return record


def new_record(host: Host, playbook: Playbook, run_id: str, identity: CodeIdentity) -> RunRecord:
    """The local record of a run about to start on `host`."""
    shard = (playbook.data.get("data") or {}).get("shard")
    count = (playbook.data.get("data") or {}).get("num_shards")
    return RunRecord(
        run_id=check_run_id(run_id),
        host=host.name,
        playbook=playbook.name,
        started_at=time.time(),
        overrides=list(playbook.overrides),
        code=identity,
        hourly_rate=host.config.hourly_rate,
        backend=host.config.backend,
        shard=shard if count else None,
        num_shards=count,
    )


def remote_record(record: RunRecord) -> dict:
    """What run.json on the host says about a run (so any laptop can find it)."""
    return {
        "run_id": record.run_id,
        "playbook": record.playbook,
        "state": RunState.RUNNING,
        "started_at": record.started_at,
        "host": record.host,
        "hourly_rate": record.hourly_rate,
        "overrides": record.overrides,
        "code": asdict(record.code) if record.code else None,
        "backend": record.backend,
        "parent": record.parent,
        "shard": record.shard,
        "num_shards": record.num_shards,
    }


def host_status(host: Host, run_ids: list[str] | None) -> list[RunStatus]:
    """One round trip: the status of the named runs (or all runs) on one host."""
    return backend_for(host.config).poll(host, run_ids)


@dataclass(frozen=True)
class StatusReport:
    """Every run seen (or last seen), and the hosts that did not answer: name -> why."""

    runs: list[RunStatus]
    unreachable: dict[str, str] = field(default_factory=dict)


def collect_status(
    config: Config, run_ids: Iterable[str] = (), host_name: str | None = None
) -> list[RunStatus]:
    """The runs of `collect_status_report` (for callers that need only those)."""
    return collect_status_report(config, run_ids, host_name).runs


def collect_status_report(
    config: Config, run_ids: Iterable[str] = (), host_name: str | None = None
) -> StatusReport:
    """Status of the named runs, or all runs on `host_name`, or all recorded runs.

    Hosts are asked in parallel, one SSH round trip each, each bounded by its timeout. Local
    records are updated with what was seen; runs found on a host without a local record are
    adopted. A host that does not answer is listed in `unreachable` even when no run is known
    for it.
    """
    records = {r.run_id: r for r in load_records(config)}
    wanted: dict[str, list[str] | None] = {}
    if run_ids:
        for rid in run_ids:
            rec = find_record(config, rid)
            wanted.setdefault(rec.host, []).append(rec.run_id)
    elif host_name:
        wanted[config.host(host_name).name] = None
    else:
        for rec in records.values():
            wanted.setdefault(rec.host, []).append(rec.run_id)

    unreachable: dict[str, str] = {}

    def ask(name: str) -> list[RunStatus]:
        ids = wanted[name]
        try:
            with open_host(config.host(name)) as host:
                return host_status(host, ids)
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
        if s.reachable:
            _remember(config, records.get(s.run_id), s)
    order = {rid: r.started_at for rid, r in records.items()}
    runs = sorted(results, key=lambda s: (order.get(s.run_id, 0), s.run_id))
    return StatusReport(runs, dict(sorted(unreachable.items())))


RECORD_REFRESH_S = 60.0


def _remember(config: Config, record: RunRecord | None, s: RunStatus) -> None:
    """Update the local record with what was seen (written only when something changed, or
    `last_seen_at` is older than RECORD_REFRESH_S: status is read far more often than it moves)."""
    if record is None:
        record = RunRecord(
            run_id=s.run_id, host=s.host, playbook=s.playbook, started_at=time.time()
        )
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


# -- logs and cancel -----------------------------------------------------------------------


def stream_log(
    config: Config,
    record: RunRecord,
    lines: int,
    follow: bool,
    on_output: Callable[[bytes], None],
    on_reconnect: Callable[[str], None] = lambda msg: None,
) -> None:
    """Print the last `lines` of the log; with `follow`, stream until the job ends.

    Following survives a lost connection: it reconnects with backoff and resumes at the byte
    offset it had reached, so nothing is printed twice or skipped.
    """
    host_cfg: HostConfig = config.host(record.host)
    offset = 0
    delay = 1.0
    first = True
    while True:
        try:
            with open_host(host_cfg) as host:
                if first:
                    res = host.run(log_tail_script(host_cfg, record.run_id, lines))
                    size, _, text = res.stdout.partition(b"\n")
                    offset = int(size or 0)
                    on_output(text)
                    first = False
                if not follow:
                    return

                def count(chunk: bytes) -> None:
                    nonlocal offset
                    offset += len(chunk)
                    on_output(chunk)

                until = backend_for(host_cfg).follow_until(host, record.run_id)
                host.run(
                    log_follow_script(host_cfg, record.run_id, offset, until),
                    timeout=math.inf,
                    on_stdout=count,
                    check=False,
                )
                return
        except HostKeyError:
            raise
        except HostUnreachable as exc:
            if not follow:  # one bounded try: exit 3, no retry loop against a dead host
                raise
            on_reconnect(f"{exc}; reconnecting in {delay:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def cancel(config: Config, record: RunRecord, grace: float = 10.0) -> CancelOutcome:
    """Stop the job: SIGINT, then SIGTERM, then SIGKILL, each after `grace` seconds; mark it."""
    with open_host(config.host(record.host)) as host:
        outcome = backend_for(host.config).cancel(host, record.run_id, grace)
    if outcome == CancelOutcome.MISSING:
        raise JobNotFound(f"run {record.run_id} not found on {record.host}")
    if outcome == CancelOutcome.CANCELLED:
        record.state = RunState.CANCELLED
        record.ended_at = time.time()
        save_record(config, record)
    return outcome
