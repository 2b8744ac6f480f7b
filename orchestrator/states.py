"""The states orch reports, as enums whose values are the words shown and written to JSON.

Each is a `str` subclass, so `state == "failed"` and `json.dumps` keep working and `--json`
output stays the same; `str()` and f-strings give the bare word. The exit code a command's
result carries is derived here, from these enums (`exit_code`, `worst_exit`), never from words.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from .errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE

# which exit code wins when several outcomes of one command disagree: a failure, then a host
# that did not answer, then success
_EXIT_ORDER = (EXIT_FAILED, EXIT_UNREACHABLE, EXIT_OK)


def worst_exit(codes: Iterable[int]) -> int:
    """The exit code of a command whose parts ended with `codes` (see `_EXIT_ORDER`)."""
    seen = set(codes)
    return next((c for c in _EXIT_ORDER if c in seen), EXIT_OK)


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
    GONE = "gone"  # its folder vanished from the host (deleted, or the machine was replaced)

    @property
    def finished(self) -> bool:
        """Whether the run has ended for good (it will not change state by itself)."""
        return self in FINISHED

    @property
    def exit_code(self) -> int:
        """How a command that waited for the run exits: 0 only when it succeeded."""
        return EXIT_OK if self is RunState.SUCCEEDED else EXIT_FAILED


FINISHED = frozenset(
    {
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.CANCELLED,
        RunState.LOST,
        RunState.SKIPPED,
        RunState.GONE,
    }
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

    @property
    def exit_code(self) -> int:
        """1 for a run that could not be fetched, 3 for a host that did not answer, else 0."""
        return {"error": EXIT_FAILED, "unreachable": EXIT_UNREACHABLE}.get(self.value, EXIT_OK)


class CheckStatus(Word):
    """One `orch doctor` check's verdict: `warn` is worth knowing but does not block."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"

    @property
    def exit_code(self) -> int:
        """1 for a failed check, else 0 (a warning does not block)."""
        return EXIT_FAILED if self is CheckStatus.FAIL else EXIT_OK
