"""What a host said about its runs: the status script's output parsed, and each run's state.

States are derived, never guessed: cancelled marker (`cancelling` while the session is alive
without an exit code) > skipped marker (queued after a run that did not succeed) > exit_code (0
-> succeeded, else failed; a gpu_worker run also needs its results.json, a `command:` job's exit
status alone is its state) > tmux session alive (queued while it waits for other runs, else
running) > neither (lost). A run file that cannot be read is reported in the run's `error`,
never turned into silence. A run folder whose name is not a valid run id (`RUN_ID_RE`) is
ignored: what a host sends never names a local file. A `command:` job's progress and last
metrics come from its log (`trainlog.py`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from gpu_worker.contract.layout import RUN_ID_RE
from gpu_worker.contract.schema import SchemaError, loads_bounded

from . import trainlog
from .scripts import SESSION_PREFIX
from .states import FINISHED, RunState


@dataclass
class SeenRun:
    """The files of one run folder as the status script showed them."""

    info: dict = field(default_factory=dict)  # run.json
    progress: dict = field(default_factory=dict)  # progress.json
    exit: int | None = None  # exit_code (-1: unreadable)
    results: bool = False  # results.json exists
    cancelled: bool = False  # the `cancelled` marker exists
    skipped: bool = False  # the `skipped` marker exists
    waiting: list[str] | None = None  # the run ids a queued run still waits for
    log_progress: dict[str, str] = field(default_factory=dict)  # trainlog's tagged lines
    alive: bool = False  # its tmux session is alive
    ended: float | None = None  # exit_code's mtime
    log: list[str] = field(default_factory=list)  # a failed run's last log lines
    errors: list[str] = field(default_factory=list)  # files that could not be read


@dataclass(frozen=True)
class StatusDump:
    """The status script's output: the host's clock and every run folder seen."""

    now: float
    runs: dict[str, SeenRun]


@dataclass(frozen=True)
class RunStatus:
    """What `orch status` read about one run, and when."""

    run_id: str
    host: str
    playbook: str
    state: RunState
    reachable: bool = True
    done: int | None = None
    total: int | None = None
    method: str | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    eta_approximate: bool = False  # some method with work left has not been timed yet
    updated_age_s: float | None = None
    elapsed_s: float | None = None
    cost: float | None = None
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)
    note: str = ""
    read_at: float = 0.0
    parent: str | None = None
    shard: int | None = None
    error: str = ""  # a run file on the host that could not be read
    metrics: dict = field(default_factory=dict)  # a `command:` job's last reported metrics
    after: str | None = None  # the run this one is queued after
    outputs: list = field(default_factory=list)  # [{path, size}] listed when the run ended
    own_command: bool = False  # a `command:` job: its results.json is optional
    lora_path: str | None = None  # how the current method runs its checkpoints (merged, ...)

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def _read_json(seen: SeenRun, leaf: str, content: str) -> dict:
    try:
        doc = loads_bounded(content)
    except SchemaError as exc:
        seen.errors.append(f"{leaf}: {exc}")
        return {}
    if not isinstance(doc, dict):
        seen.errors.append(f"{leaf}: not a JSON object")
        return {}
    return doc


def _file_line(runs: dict[str, SeenRun], line: str) -> None:
    """One `<run_id>/<file>:<content>` line of `grep -H`."""
    path, sep, content = line.partition(":")
    run_id, _, leaf = path.partition("/")
    if not sep or leaf not in ("run.json", "progress.json", "exit_code", "waiting", "progress.txt"):
        return
    if leaf != "run.json" and run_id not in runs:
        return
    if not RUN_ID_RE.match(run_id):  # a folder that is no run: never a local file name
        return
    seen = runs.setdefault(run_id, SeenRun())
    if leaf == "run.json":
        seen.info = _read_json(seen, leaf, content)
    elif leaf == "progress.json":
        seen.progress = _read_json(seen, leaf, content)
    elif leaf == "waiting":
        seen.waiting = content.split()
    elif leaf == "progress.txt":
        _tagged(seen, content)
    else:
        code = content.strip()
        if code.lstrip("-").isdigit():
            seen.exit = int(code)
        else:
            seen.exit = -1
            seen.errors.append(f"exit_code: '{code[:20]}' is not a number")


def _tagged(seen: SeenRun, line: str) -> None:
    """One of trainlog's tagged lines (`P ...`, `H ...`, `T ...`)."""
    tag, _, rest = line.partition(" ")
    if tag in ("P", "H", "T"):
        seen.log_progress[tag] = rest


def parse_status(text: str, default_now: float) -> StatusDump:
    """Parse `scripts.status_script`'s output (`default_now` if the host sent no clock)."""
    now, runs, alive = default_now, {}, set()
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "@now":
            now = float(rest)
        elif tag == "@alive":
            alive.add(rest.removeprefix(SESSION_PREFIX))
        elif tag == "@has":
            path = rest.rpartition(":")[0]
            run_id, _, leaf = path.partition("/")
            if run_id in runs and leaf in ("results.json", "cancelled", "skipped"):
                setattr(runs[run_id], leaf.removesuffix(".json"), True)
        elif tag == "@ended":
            path, _, mtime = rest.rpartition(" ")
            run_id = path.partition("/")[0]
            if run_id in runs and mtime.isdigit():
                runs[run_id].ended = float(mtime)
        elif tag == "@prog":
            run_id, _, tagged = rest.partition(" ")
            if run_id in runs:
                _tagged(runs[run_id], tagged)
        elif tag == "@big":  # a file too large to read: that run's error
            run_id, _, leaf = rest.partition("/")
            if RUN_ID_RE.match(run_id):
                runs.setdefault(run_id, SeenRun()).errors.append(f"{leaf}: too large, not read")
        elif tag == "@log":
            run_id, _, text_line = rest.partition(" ")
            if run_id in runs:
                runs[run_id].log.append(text_line)
        else:
            _file_line(runs, line)
    for run_id, seen in runs.items():
        seen.alive = run_id in alive
    return StatusDump(now, runs)


def derive_state(seen: SeenRun) -> RunState:
    """The run's state from what the host showed (see the module docstring)."""
    if seen.cancelled:  # final only once the job is gone (its exit code is written)
        if seen.exit is None and seen.alive:
            return RunState.CANCELLING
        return RunState.CANCELLED
    if seen.skipped:
        return RunState.SKIPPED
    if seen.exit is not None:
        needs_results = not seen.info.get("own_command")
        ok = seen.exit == 0 and (seen.results or not needs_results)
        return RunState.SUCCEEDED if ok else RunState.FAILED
    if not seen.alive:
        return RunState.LOST
    return RunState.QUEUED if seen.waiting is not None else RunState.RUNNING


def _number(value: object) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _run_id(value: object) -> str | None:
    """A run id the host named (parent, after), or None when it is not a valid one."""
    return value if isinstance(value, str) and RUN_ID_RE.match(value) else None


def _note(state: RunState, seen: SeenRun) -> str:
    """Why a run is in its state, when the state alone does not say."""
    after = seen.info.get("after")
    if state == RunState.FAILED and seen.exit == 0:
        return "exit 0 but no results.json"
    if state == RunState.LOST:
        return "no tmux session and no exit code: host rebooted or job killed"
    if state == RunState.SKIPPED:
        return f"not started: run {after} did not succeed"
    if state == RunState.QUEUED and seen.waiting is not None:
        behind = " ".join(w for w in seen.waiting if w != after)
        parts = [f"after {after}" if after else "", f"behind {behind}" if behind else ""]
        return ", ".join(p for p in parts if p)
    return ""


def _log_fields(seen: SeenRun, state: RunState, elapsed: float | None) -> dict:
    """done, total, ETA and metrics of a `command:` job from its log (none: empty)."""
    own = seen.info.get("own_command") and not seen.progress  # the worker has progress.json
    said = trainlog.parse(seen.log_progress) if own else None
    if said is None:
        return {}
    eta = trainlog.eta(said, elapsed) if state == RunState.RUNNING else None
    return {
        "done": said.step,
        "total": said.total,
        "metrics": said.metrics,
        "eta_s": eta,
        "eta_approximate": eta is not None,
    }


def to_status(host_name: str, run_id: str, seen: SeenRun, now: float, read_at: float) -> RunStatus:
    """The `RunStatus` of one run folder (`now`: the host's clock, `read_at`: the laptop's)."""
    info, prog = seen.info, seen.progress
    state = derive_state(seen)
    started = _number(info.get("started_at"))
    end = seen.ended if state in FINISHED else None
    # never negative: exit_code's mtime is whole seconds and the host's clock may lag the laptop's
    elapsed = max(0.0, (end or now) - started) if started is not None else None
    rate = _number(info.get("hourly_rate"))
    note = _note(state, seen)
    updated = _number(prog.get("updated_at"))
    error = "; ".join(seen.errors)
    status = RunStatus(
        run_id=run_id,
        host=host_name,
        playbook=str(info.get("playbook", "?")),
        state=state,
        done=prog.get("done"),
        total=prog.get("total"),
        method=prog.get("method"),
        lora_path=prog.get("lora_path") if isinstance(prog.get("lora_path"), str) else None,
        images_per_s=prog.get("images_per_s"),
        eta_s=prog.get("eta_s") if state == RunState.RUNNING else None,
        eta_approximate=bool(prog.get("eta_approximate")),
        updated_age_s=(now - updated) if updated is not None else None,
        elapsed_s=elapsed,
        cost=(elapsed / 3600 * rate) if elapsed is not None and rate else None,
        exit_code=seen.exit,
        log_tail=seen.log,
        note="; ".join(x for x in (note, error) if x),
        read_at=read_at,
        parent=_run_id(info.get("parent")),
        shard=info.get("shard") if isinstance(info.get("shard"), int) else None,
        error=error,
        after=_run_id(info.get("after")),
        outputs=info.get("outputs") if isinstance(info.get("outputs"), list) else [],
        own_command=bool(info.get("own_command")),
    )
    return replace(status, **_log_fields(seen, state, elapsed))
