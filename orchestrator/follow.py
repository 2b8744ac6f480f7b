"""Runs' logs: `stream_log` prints one run's log (its tail; following it until the job ends,
reconnecting when a link drops); `Follow` does so for one run or a sharded run's shards side by
side (each line prefixed `[host/shard] `) and returns their final statuses; `worst_state` is
the state a set of runs exits with.

Several runs are followed on daemon threads; their lines reach `write` whole, one at a time.
On Ctrl-C the caller calls `Follow.stop()`: nothing is written after it returns, and the jobs
keep running on their hosts.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from .backends import backend_for
from .config import Config, HostConfig
from .errors import HostKeyError, HostUnreachable, JobNotFound
from .hosts import Hosts, scoped
from .records import RunRecord
from .scripts import log_follow_script, log_tail_script
from .states import RunState

# the state a set of runs ends in: the first of these any of them is in
WORST_FIRST = (
    RunState.FAILED,
    RunState.LOST,
    RunState.SKIPPED,
    RunState.CANCELLED,
    RunState.CANCELLING,
    RunState.RUNNING,
    RunState.QUEUED,
    RunState.NOT_STARTED,
    RunState.SUCCEEDED,
)


def worst_state(states: Sequence[str]) -> str:
    """The combined state of several runs (a sharded run): the worst of `states`."""
    return next((s for s in WORST_FIRST if s in states), "unknown")


def prefix_of(record: RunRecord) -> bytes:
    """`[host/shard] ` for a shard (`[host] ` for a run that is not one)."""
    shard = f"/{record.shard}" if record.shard is not None else ""
    return f"[{record.host}{shard}] ".encode()


class Follow:
    """Follows `records` (see the module docstring); `run()` returns their final statuses."""

    def __init__(
        self,
        config: Config,
        records: list[RunRecord],
        lines: int,
        write: Callable[[bytes], None],
        warn: Callable[[str], None],
        follow: bool = True,
        hosts: Hosts | None = None,
    ) -> None:
        self.config, self.records, self.lines = config, records, lines
        self.write, self.warn, self.follow = write, warn, follow
        self.hosts = hosts
        self._lock = threading.Lock()
        self._stopped = False

    def run(self) -> list:
        """Stream every log until its job ends (once, without `follow`); the final statuses
        (`jobs.RunStatus`, in `records` order; a run no longer known has none)."""
        from .jobs import collect_status

        with scoped(self.config, self.hosts) as hosts:
            if len(self.records) == 1:  # one run: in this thread, as it prints
                self._stream(self.records[0], self.write, self.warn, hosts)
            else:
                self._run_all(hosts)
            if not self.follow:
                return []
            return collect_status(self.config, [r.run_id for r in self.records], hosts=hosts)

    def _stream(self, record: RunRecord, write, warn, hosts: Hosts) -> None:
        stream_log(self.config, record, self.lines, self.follow, write, warn, hosts)

    def stop(self) -> None:
        """Write nothing more (the threads are left to end with the process)."""
        with self._lock:
            self._stopped = True

    def _run_all(self, hosts: Hosts) -> None:
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._one, args=(r, errors, hosts), daemon=True)
            for r in self.records
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # a timed join: Ctrl-C reaches this thread at once
                t.join(0.2)
        if errors:
            raise errors[0]

    def _one(self, record: RunRecord, errors: list[BaseException], hosts: Hosts) -> None:
        prefix, pending = prefix_of(record), b""

        def lines(chunk: bytes) -> None:
            nonlocal pending
            *whole, pending = (pending + chunk).split(b"\n")
            self._emit(b"".join(prefix + line + b"\n" for line in whole))

        def warn(msg: str) -> None:
            self.warn(f"{prefix.decode().strip()} {msg}")

        try:
            self._stream(record, lines, warn, hosts)
        except Exception as exc:  # noqa: BLE001 - handed to the caller by _run_all
            errors.append(exc)
        if pending:
            self._emit(prefix + pending + b"\n")

    def _emit(self, data: bytes) -> None:
        with self._lock:
            if data and not self._stopped:
                self.write(data)


def stream_log(
    config: Config,
    record: RunRecord,
    lines: int,
    follow: bool,
    on_output: Callable[[bytes], None],
    on_reconnect: Callable[[str], None] = lambda msg: None,
    hosts: Hosts | None = None,
) -> None:
    """Print the last `lines` of the log; with `follow`, stream until the job ends.

    Following survives a lost connection: it reconnects with backoff and resumes at the byte
    offset it had reached, so nothing is printed twice or skipped. `hosts`: the command's
    connections (None: this call's own).
    """
    with scoped(config, hosts) as own:
        _stream_log(config, record, lines, follow, on_output, on_reconnect, own)


def _stream_log(
    config: Config,
    record: RunRecord,
    lines: int,
    follow: bool,
    on_output: Callable[[bytes], None],
    on_reconnect: Callable[[str], None],
    hosts: Hosts,
) -> None:
    from .jobs import run_host

    host_cfg: HostConfig = run_host(config, record, hosts)
    offset = 0
    delay = 1.0
    first = True
    while True:
        try:
            with hosts.open(host_cfg) as host:
                if first:
                    res = host.run(log_tail_script(host_cfg, record.run_id, lines))
                    size, _, text = res.stdout.partition(b"\n")
                    if size == b"gone":
                        raise JobNotFound(
                            f"{record.run_id}: its folder is gone from {record.host}; "
                            f"`orch forget {record.run_id}` drops its record"
                        )
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
