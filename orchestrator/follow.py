"""Following runs' logs: `follow_runs` streams one run's log, or the logs of a sharded run's
shards side by side (each line prefixed `[host/shard] `), until every job ends, reconnecting
when a link drops (`jobs.stream_log`), and returns their final statuses; `worst_state` is the
state a set of runs exits with.

Several runs are followed on daemon threads; their lines reach `write` whole, one at a time.
On Ctrl-C the caller calls `Follow.stop()`: nothing is written after it returns, and the jobs
keep running on their hosts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .config import Config
from .records import RunRecord
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
    ) -> None:
        self.config, self.records, self.lines = config, records, lines
        self.write, self.warn, self.follow = write, warn, follow
        self._lock = threading.Lock()
        self._stopped = False

    def run(self) -> list:
        """Stream every log until its job ends (once, without `follow`); the final statuses
        (`jobs.RunStatus`, in `records` order; a run no longer known has none)."""
        from . import jobs

        if len(self.records) == 1:  # one run: in this thread, as it prints
            jobs.stream_log(
                self.config, self.records[0], self.lines, self.follow, self.write, self.warn
            )
        else:
            self._run_all()
        if not self.follow:
            return []
        return jobs.collect_status(self.config, [r.run_id for r in self.records])

    def stop(self) -> None:
        """Write nothing more (the threads are left to end with the process)."""
        with self._lock:
            self._stopped = True

    def _run_all(self) -> None:
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._one, args=(r, errors), daemon=True) for r in self.records
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # a timed join: Ctrl-C reaches this thread at once
                t.join(0.2)
        if errors:
            raise errors[0]

    def _one(self, record: RunRecord, errors: list[BaseException]) -> None:
        from . import jobs

        prefix, pending = prefix_of(record), b""

        def lines(chunk: bytes) -> None:
            nonlocal pending
            *whole, pending = (pending + chunk).split(b"\n")
            self._emit(b"".join(prefix + line + b"\n" for line in whole))

        def warn(msg: str) -> None:
            self.warn(f"{prefix.decode().strip()} {msg}")

        try:
            jobs.stream_log(self.config, record, self.lines, self.follow, lines, warn)
        except Exception as exc:  # noqa: BLE001 - handed to the caller by _run_all
            errors.append(exc)
        if pending:
            self._emit(prefix + pending + b"\n")

    def _emit(self, data: bytes) -> None:
        with self._lock:
            if data and not self._stopped:
                self.write(data)
