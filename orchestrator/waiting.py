"""`orch wait RUN…`: block until runs end, then say how they ended.

Contract:
- The runs are asked for every `interval` seconds through the same status path as `orch status`
  (one round trip per host, records updated, `notify:` fired once per run when its end is seen);
  there is no deadline unless `timeout` is given.
- A run has ended when its state is final (`states.FINISHED`) or it never started (a shard whose
  launch failed). A host that does not answer is not an end: its runs are waited for (the host
  may come back), the host is reported once per outage.
- The combined exit code: 0 when every run succeeded, 1 when any failed, was lost, cancelled,
  skipped or never started; on `timeout` with runs still going, `EXIT_TIMEOUT` (124, as
  `timeout(1)`), or 3 when it is an unreachable host that keeps a run from being known.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Config
from .errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE
from .states import RunState
from .status import RunStatus

EXIT_TIMEOUT = 124
DEFAULT_INTERVAL_S = 30.0


@dataclass(frozen=True)
class WaitOutcome:
    """The runs as last seen, whether the timeout ran out first, the hosts that did not answer."""

    runs: list[RunStatus]
    timed_out: bool = False
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """See the module docstring."""
        if self.timed_out:
            still = [s for s in self.runs if not ended(s)]
            return EXIT_UNREACHABLE if any(not s.reachable for s in still) else EXIT_TIMEOUT
        ok = all(s.state == RunState.SUCCEEDED for s in self.runs)
        return EXIT_OK if ok else EXIT_FAILED

    def to_json(self) -> dict:
        """A JSON-ready dict for `--json`."""
        return {
            "runs": [s.to_json() for s in self.runs],
            "timed_out": self.timed_out,
            "unreachable": self.unreachable,
            "exit_code": self.exit_code,
        }


def ended(s: RunStatus) -> bool:
    """Whether the run will not change state by itself any more."""
    return s.state.finished or s.state == RunState.NOT_STARTED


def resolve_runs(config: Config, refs: tuple[str, ...]) -> tuple[tuple[str, ...], list]:
    """(run ids with sharded parents expanded to their shards, never-started shards)."""
    from .runrefs import latest_ids
    from .shards import split

    return split(config, latest_ids(config, refs))


def wait_for(
    config: Config,
    refs: tuple[str, ...],
    interval: float = DEFAULT_INTERVAL_S,
    timeout: float | None = None,
    on_change: Callable[[RunStatus], None] = lambda s: None,
    on_unreachable: Callable[[str, str], None] = lambda name, why: None,
) -> WaitOutcome:
    """Poll the runs `refs` names until each has ended (or `timeout` seconds passed); each new
    state seen goes to `on_change`, each host that stops answering to `on_unreachable` once."""
    from .jobs import collect_status_report

    ids, unstarted = resolve_runs(config, refs)
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: dict[str, RunState] = {}
    down: set[str] = set()
    while True:
        report = collect_status_report(config, ids) if ids else None
        runs = (report.runs if report else []) + unstarted
        unreachable = report.unreachable if report else {}
        for s in runs:
            if s.reachable and seen.get(s.run_id) != s.state:
                seen[s.run_id] = s.state
                on_change(s)
        for name, why in unreachable.items():
            if name not in down:
                on_unreachable(name, why)
        down = set(unreachable)
        going = [s for s in runs if not ended(s)]
        if not going:
            return WaitOutcome(runs, False, unreachable)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return WaitOutcome(runs, True, unreachable)
        time.sleep(interval if left is None else min(interval, left))
