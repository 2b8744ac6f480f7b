"""What Slurm says about jobs, read into orch's terms: `parse_slurm` turns the squeue (@sq),
sacct (@sa) and scontrol (@sc) lines of a poll into `SlurmJob`s, and `slurm_state` decides a
run's state and note from its files and its job (pure functions, tested on canned output)."""

from __future__ import annotations

from dataclasses import dataclass

from ..states import RunState
from ..status import SeenRun

STATES: dict[str, RunState] = {
    "PENDING": RunState.QUEUED,
    "REQUEUED": RunState.QUEUED,
    "REQUEUE_HOLD": RunState.QUEUED,
    "SUSPENDED": RunState.QUEUED,
    "CONFIGURING": RunState.RUNNING,
    "RUNNING": RunState.RUNNING,
    "COMPLETING": RunState.RUNNING,
    "COMPLETED": RunState.SUCCEEDED,
    "FAILED": RunState.FAILED,
    "TIMEOUT": RunState.FAILED,
    "OUT_OF_MEMORY": RunState.FAILED,
    "DEADLINE": RunState.FAILED,
    "CANCELLED": RunState.CANCELLED,
    "NODE_FAIL": RunState.LOST,
    "PREEMPTED": RunState.LOST,
    "BOOT_FAIL": RunState.LOST,
}
# Slurm ended the job itself: its word beats the exit code the wrapper managed to write.
SLURM_DECIDES = ("TIMEOUT", "OUT_OF_MEMORY", "DEADLINE", "CANCELLED", "NODE_FAIL", "PREEMPTED")


@dataclass(frozen=True)
class SlurmJob:
    """What Slurm said about one job (or array task): state, reason, exit code."""

    job_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None


def _exit(text: str) -> int | None:
    code = text.split(":")[0]
    return int(code) if code.isdigit() else None


def parse_slurm(text: str) -> dict[str, SlurmJob]:
    """`{job_id: SlurmJob}` from the @sq (squeue), @sa (sacct) and @sc (scontrol) lines.

    Array tasks are keyed `<array job>_<task>`; a pending array's range (`12_[1-3]`, or
    `ArrayTaskId=1-3`) is expanded. squeue, the live view, wins over the other two.
    """
    jobs: dict[str, SlurmJob] = {}
    live: dict[str, SlurmJob] = {}
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "@sq":
            job_id, state, reason = (rest.split("|") + ["", ""])[:3]
            for jid in _expand(job_id):
                live[jid] = SlurmJob(jid, state, "" if reason == "None" else reason)
        elif tag == "@sa":
            job_id, state, code, reason = (rest.split("|") + ["", "", ""])[:4]
            for jid in _expand(job_id):
                word = state.split()[0] if state else ""
                jobs[jid] = SlurmJob(jid, word, "" if reason == "None" else reason, _exit(code))
        elif tag == "@sc":
            f = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
            base = f.get("ArrayJobId")
            task = f.get("ArrayTaskId")
            job_id = f"{base}_{task}" if base and task else f.get("JobId", "")
            reason = f.get("Reason", "")
            for jid in _expand(job_id):
                jobs[jid] = SlurmJob(
                    jid,
                    f.get("JobState", ""),
                    "" if reason == "None" else reason,
                    _exit(f.get("ExitCode", "")),
                )
    return {**jobs, **live}


def _expand(job_id: str) -> list[str]:
    """`12_[1-3,5]` or `12_1-3` -> 12_1 12_2 12_3 (12_5); a plain id stays itself."""
    base, sep, tasks = job_id.partition("_")
    if not sep:
        return [job_id] if job_id else []
    tasks = tasks.strip("[]").split("%")[0]
    out = []
    for part in tasks.split(","):
        lo, dash, hi = part.partition("-")
        if lo.isdigit() and (not dash or hi.isdigit()):
            out += [f"{base}_{t}" for t in range(int(lo), int(hi if dash else lo) + 1)]
    return out


def slurm_state(base_state: RunState, seen: SeenRun, job: SlurmJob | None) -> tuple[RunState, str]:
    """orch's state and a note from the run's files (`base_state`, jobs.derive_state) and Slurm.

    The cancelled marker and Slurm's own endings (SLURM_DECIDES) come first; then the exit code
    the wrapper wrote; then Slurm's live state. A job Slurm no longer knows, with no exit code,
    is lost.
    """
    if seen.cancelled:
        return RunState.CANCELLED, ""
    word = job.state if job else ""
    after = seen.info.get("after")
    never = job is not None and "DependencyNeverSatisfied" in job.reason
    if after and seen.exit is None and (word == "CANCELLED" or never):
        return RunState.SKIPPED, f"not started: run {after} did not succeed"
    if word in SLURM_DECIDES:
        note = f"Slurm: {word}" + (f" ({job.reason})" if job.reason else "")
        if word in ("TIMEOUT", "PREEMPTED", "NODE_FAIL"):
            note += "; continue it with `orch run --resume RUN`"
        return STATES[word], note
    if seen.exit is not None:
        return base_state, ""
    if job is None:
        return RunState.LOST, "Slurm does not know the job any more and it left no exit code"
    state = STATES.get(word, RunState.RUNNING)
    if state == RunState.SUCCEEDED:
        return RunState.FAILED, "Slurm: COMPLETED but the job left no exit code"
    if state == RunState.QUEUED:
        said = f"Slurm: {word}" + (f" ({job.reason})" if job.reason else "")
        return state, (f"after {after}; " if after else "") + said
    return state, f"Slurm: {word}" if state != RunState.RUNNING else ""
