"""The states orch reports, as enums whose values are the words shown and written to JSON.

Each is a `str` subclass, so `state == "failed"` and `json.dumps` keep working and `--json`
output stays the same; `str()` and f-strings give the bare word.
"""

from __future__ import annotations

from enum import Enum


class Word(str, Enum):
    """An enum member that prints as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class RunState(Word):
    """A run's state (see DESIGN.md, "States of a run")."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    NOT_STARTED = "not started"  # a shard whose launch failed or was killed (no run record)
    SKIPPED = "skipped"  # queued `--after` a run that did not succeed: never started

    @property
    def finished(self) -> bool:
        """Whether the run has ended for good (it will not change state by itself)."""
        return self in FINISHED


FINISHED = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.LOST, RunState.SKIPPED}
)


class CancelOutcome(Word):
    """What `orch cancel` did to one run."""

    CANCELLED = "cancelled"
    FINISHED = "finished"
    MISSING = "missing"


class FetchOutcome(Word):
    """What `orch fetch` did with one run."""

    FETCHED = "fetched"
    ALREADY = "already fetched"
    STILL_RUNNING = "still running"
    NOT_FINAL = "not final"
    UNREACHABLE = "unreachable"
    ERROR = "error"
    MERGED = "merged"
    ALREADY_MERGED = "already merged"
    GONE = "gone"


class CheckStatus(Word):
    """One `orch doctor` check's verdict: `warn` is worth knowing but does not block."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
