"""Jobs on a host: launch under tmux, run records, states, progress, logs and cancel.

On the host, `<remote_dir>/runs/<run_id>/` holds run.json (written at launch), playbook.yaml,
log.txt, pid, progress.json (by the worker), results.json, exit_code (by the job's wrapper when the
command ends, or by `orch cancel` when it had to SIGKILL), `cancelled` (by `orch cancel`) and,
until the job has read it, `env` (mode 0600: the host's `env:` values, sent on stdin so that no
secret is ever in a command line). States are derived, never guessed: cancelled marker
(`cancelling` while the session is alive without an exit code) > exit_code (0 and results.json
-> succeeded, else failed) > tmux session alive (running) > neither (lost). A host that does not
answer is "unreachable", shown beside the last state seen and listed in the status report even
when no run is known for it; it is never turned into a job failure.

Locally, `.orch/runs/<run_id>.json` keeps a record of each run so any later `orch status` finds it.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shlex
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .backends import Launch, backend_for
from .config import Config, HostConfig
from .errors import ConfigError, HostKeyError, HostUnreachable, JobNotFound
from .playbooks import Playbook, render_command
from .sync import push
from .transport import Host, open_host

SESSION_PREFIX = "orch-"
RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,120}$")
FINISHED = ("succeeded", "failed", "cancelled", "lost")
LOG_TAIL_LINES = 10
PRECHECK_EXIT = 77  # gpu_worker.precheck.EXIT_PROBLEM: a model folder or adapter is missing


@dataclass
class RunRecord:
    """The laptop's record of one run (`.orch/runs/<run_id>.json`)."""

    run_id: str
    host: str
    playbook: str
    started_at: float
    overrides: list[str] = field(default_factory=list)
    code: dict | None = None
    state: str = "running"
    last_seen_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    hourly_rate: float | None = None
    fetched: bool = False
    backend: str = "tmux"
    job_id: str | None = None
    parent: str | None = None
    shard: int | None = None
    num_shards: int | None = None

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RunStatus:
    """What `orch status` read about one run, and when."""

    run_id: str
    host: str
    playbook: str
    state: str
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

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


# -- local records -------------------------------------------------------------------------


def records_dir(config: Config) -> Path:
    """Where run records live: `.orch/runs/` under the project root."""
    return config.root / ".orch" / "runs"


def check_run_id(run_id: str) -> str:
    """Refuse run ids that could escape their folder or break a shell word."""
    if not RUN_ID_RE.match(run_id):
        raise ConfigError(f"invalid run id '{run_id}': expected lowercase letters, digits, - _ .")
    return run_id


def save_record(config: Config, record: RunRecord) -> None:
    """Write a run record atomically (temp file + rename), so concurrent readers never see half."""
    folder = records_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{check_run_id(record.run_id)}.json", json.dumps(asdict(record)))


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write `path` via a temp file in the same folder and a rename."""
    data = text.encode() if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_records(config: Config) -> list[RunRecord]:
    """Every local run record, oldest first."""
    out = []
    for p in sorted(records_dir(config).glob("*.json")):
        try:
            out.append(RunRecord.from_json(json.loads(p.read_text())))
        except (json.JSONDecodeError, TypeError):
            continue
    return sorted(out, key=lambda r: r.started_at)


def find_record(config: Config, run_id: str) -> RunRecord:
    """The record whose id is `run_id` or starts with it (unambiguously)."""
    records = load_records(config)
    exact = [r for r in records if r.run_id == run_id]
    matches = exact or [r for r in records if r.run_id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise JobNotFound(f"no run '{run_id}' in .orch/runs; see `orch status --host NAME`")
    names = ", ".join(r.run_id for r in matches[:5])
    raise JobNotFound(f"run '{run_id}' is ambiguous: {names}")


def new_run_id(playbook: str) -> str:
    """`<playbook>-<YYYYmmdd-HHMMSS>-<4 hex>`."""
    slug = re.sub(r"[^a-z0-9_]+", "-", playbook.lower()).strip("-") or "run"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_dir(host: Host, run_id: str) -> str:
    """Shell-quoted `<remote_dir>/runs/<run_id>`."""
    return host.path("runs", check_run_id(run_id))


# -- launch --------------------------------------------------------------------------------


ENV_FILE = "env"


def env_file(host: Host) -> bytes:
    """The host's `env:` values as a sourceable file. It reaches the host on stdin and is kept
    mode 0600 in the run folder until the job reads it: secrets never appear in a command line
    (`ps`), only in the job's own environment."""
    lines = [f"export {k}={shlex.quote(v)}" for k, v in host.config.env.items()]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _python_setup(host: Host) -> str:
    """Shell lines setting ORCH_PYTHON: the host's venv, else its configured interpreter."""
    return (
        f"ORCH_PYTHON={host.path('venv', 'bin', 'python')}\n"
        f'[ -x "$ORCH_PYTHON" ] || ORCH_PYTHON=$(command -v {shlex.quote(host.config.python)})'
    )


def _precheck_script(host: Host, playbook: Playbook) -> str:
    """Shell lines run before tmux: `gpu_worker.precheck` on the written playbook.yaml. On a
    problem the run folder is removed and the script exits PRECHECK_EXIT with the problems on
    stdout, so a missing checkpoint is a one-line error of `orch run`, not a failed job.
    Playbooks with their own `command:` are not checked (they need not use the worker)."""
    if "command" in playbook.data:
        return ""
    return f"""rc=0
msg=$(cd {host.path("code")} && {{
{_python_setup(host)}
"$ORCH_PYTHON" -m gpu_worker.precheck "$D/playbook.yaml" 2>&1; }}) || rc=$?
if [ "$rc" != 0 ]; then
  rm -rf "$D"; printf '%s\n' "$msg"; [ "$rc" = {PRECHECK_EXIT} ] || printf '%s\n' "$msg" >&2
  exit "$rc"
fi
"""


def job_steps(host: Host, command: str) -> list[str]:
    """The job's shell steps once `$D` (the run folder) and ORCH_RUN_ID are set, shared by the
    tmux wrapper and the Slurm batch script: pid, cd into the code, the env file, the command
    (all of it, `a; b` included) with its output appended to log.txt, its status to exit_code.
    No secret is part of this text (see `env_file`)."""
    env = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return [
        'echo $$ > "$D/pid"',
        f'cd "$(cd {host.path("code")} && pwd -P)" 2>> "$D/log.txt" || '
        '{ echo 1 > "$D/exit_code"; exit 1; }',
        "trap 'true' INT TERM",  # the wrapper outlives SIGINT/SIGTERM to record exit_code
        f'[ -f "$D/{ENV_FILE}" ] && . "$D/{ENV_FILE}"; rm -f "$D/{ENV_FILE}"',
        f'export {exports} ORCH_RUN_DIR="$D"',
        _python_setup(host),
        "export ORCH_PYTHON",
        f'{{ {command}\n}} >> "$D/log.txt" 2>&1 < /dev/null',
        "code=$?",
        'echo $code > "$D/exit_code.tmp" && mv -f "$D/exit_code.tmp" "$D/exit_code"',
        "exit $code",
    ]


def _job_script(host: Host, run_id: str, command: str) -> str:
    """What tmux runs: `job_steps` for the run folder of `run_id`."""
    head = [f"D={run_dir(host, run_id)}", f"export ORCH_RUN_ID={shlex.quote(run_id)}"]
    return "\n".join(head + job_steps(host, command))


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
    command = render_command(playbook.command, '"$D"/playbook.yaml', '"$D"')
    if resume:
        command += " --resume"
    launch = Launch(
        record.run_id,
        playbook.to_yaml(),
        {**remote_record(record), "resume": resume},
        precheck="" if resume else _precheck_script(host, playbook),
    )
    backend = backend_for(host.config)
    record.job_id = backend.submit(host, [launch], command, allow_concurrent)[0]
    save_record(config, record)
    return record


def new_record(host: Host, playbook: Playbook, run_id: str, identity) -> RunRecord:
    """The local record of a run about to start on `host`."""
    shard = (playbook.data.get("data") or {}).get("shard")
    count = (playbook.data.get("data") or {}).get("num_shards")
    return RunRecord(
        run_id=check_run_id(run_id),
        host=host.name,
        playbook=playbook.name,
        started_at=time.time(),
        overrides=list(playbook.overrides),
        code=asdict(identity),
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
        "state": "running",
        "started_at": record.started_at,
        "host": record.host,
        "hourly_rate": record.hourly_rate,
        "overrides": record.overrides,
        "code": record.code,
        "backend": record.backend,
        "parent": record.parent,
        "shard": record.shard,
        "num_shards": record.num_shards,
    }


# -- status --------------------------------------------------------------------------------


def _status_script(host: Host, run_ids: list[str] | None) -> str:
    """A shell script that reports every run's files with a fixed handful of processes.

    `grep -H ''` prints each small file's line prefixed with its path, for all runs at once, and
    `grep -c ''` says which marker files exist; a failed run's log tail is the only per-run
    process. The cost stays flat as runs accumulate on a host.
    """
    names = [check_run_id(r) for r in run_ids] if run_ids is not None else ["*"]

    def each(leaf: str) -> str:
        return " ".join(f"{n}/{leaf}" for n in names)

    return f"""cd {host.path("runs")} 2>/dev/null || exit 0
echo "@now $(date +%s)"
tmux ls -F '@alive #{{session_name}}' 2>/dev/null
grep -H '' {each("run.json")} {each("progress.json")} {each("exit_code")} 2>/dev/null
grep -c '' {each("results.json")} {each("cancelled")} 2>/dev/null | sed 's/^/@has /'
stat -c '@ended %n %Y' {each("exit_code")} 2>/dev/null
for f in {each("exit_code")}; do
  d=${{f%/exit_code}}
  [ -f "$f" ] && read -r code < "$f" && [ "$code" != 0 ] &&
    tail -n {LOG_TAIL_LINES} "$d/log.txt" 2>/dev/null | sed "s|^|@log $d |"
done
exit 0
"""


def _parse_status(text: str) -> tuple[float, dict[str, dict]]:
    """Turn the status script's output into `{run_id: seen}` (see `derive_state`)."""
    now, runs, alive = time.time(), {}, set()
    files = {"run.json": "json", "progress.json": "progress", "exit_code": "exit"}
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "@now":
            now = float(rest)
        elif tag == "@alive":
            alive.add(rest.removeprefix(SESSION_PREFIX))
        elif tag == "@has":
            path, _, count = rest.rpartition(":")
            run_id, _, leaf = path.partition("/")
            if run_id in runs:
                runs[run_id][leaf.removesuffix(".json")] = True
        elif tag == "@ended":
            path, _, mtime = rest.rpartition(" ")
            run_id = path.partition("/")[0]
            if run_id in runs and mtime.isdigit():
                runs[run_id]["ended"] = float(mtime)
        elif tag == "@log":
            run_id, _, text_line = rest.partition(" ")
            if run_id in runs:
                runs[run_id]["log"].append(text_line)
        else:
            path, sep, content = line.partition(":")
            run_id, _, leaf = path.partition("/")
            key = files.get(leaf)
            if not sep or key is None or (key != "json" and run_id not in runs):
                continue
            seen = runs.setdefault(run_id, {"log": []})
            if key == "exit":
                code = content.strip()
                seen["exit"] = int(code) if code.lstrip("-").isdigit() else -1
            else:
                try:
                    seen[key] = json.loads(content)
                except json.JSONDecodeError:
                    seen[key] = {}
    for run_id, seen in runs.items():
        seen["alive"] = run_id in alive
    return now, runs


def derive_state(seen: dict) -> str:
    """The run's state from what the host showed (see the module docstring)."""
    if seen.get("cancelled"):  # final only once the job is gone (its exit code is written)
        return "cancelling" if "exit" not in seen and seen.get("alive") else "cancelled"
    if "exit" in seen:
        return "succeeded" if seen["exit"] == 0 and seen.get("results") else "failed"
    return "running" if seen.get("alive") else "lost"


def _to_status(host_name: str, run_id: str, seen: dict, now: float, read_at: float) -> RunStatus:
    info, prog = seen.get("json") or {}, seen.get("progress") or {}
    state = derive_state(seen)
    started = info.get("started_at")
    end = seen.get("ended") if state in FINISHED else None
    elapsed = ((end or now) - started) if isinstance(started, (int, float)) else None
    rate = info.get("hourly_rate")
    note = ""
    if state == "failed" and seen.get("exit") == 0:
        note = "exit 0 but no results.json"
    elif state == "lost":
        note = "no tmux session and no exit code: host rebooted or job killed"
    updated = prog.get("updated_at")
    return RunStatus(
        run_id=run_id,
        host=host_name,
        playbook=str(info.get("playbook", "?")),
        state=state,
        done=prog.get("done"),
        total=prog.get("total"),
        method=prog.get("method"),
        images_per_s=prog.get("images_per_s"),
        eta_s=prog.get("eta_s") if state == "running" else None,
        eta_approximate=bool(prog.get("eta_approximate")),
        updated_age_s=(now - updated) if isinstance(updated, (int, float)) else None,
        elapsed_s=elapsed,
        cost=(elapsed / 3600 * rate) if elapsed is not None and rate else None,
        exit_code=seen.get("exit"),
        log_tail=seen.get("log", []),
        note=note,
        read_at=read_at,
        parent=info.get("parent"),
        shard=info.get("shard"),
    )


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
                log = f"{run_dir(host, record.run_id)}/log.txt"
                if first:
                    res = host.run(
                        f"s=$(stat -c %s {log} 2>/dev/null || echo 0); echo $s; "
                        f"head -c $s {log} 2>/dev/null | tail -n {int(lines)}"
                    )
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

                d = run_dir(host, record.run_id)
                until = backend_for(host.config).follow_until(host, record.run_id)
                start = offset + 1
                host.run(
                    f"if [ -f {d}/exit_code ]; then tail -c +{start} {log}; else "
                    f"tail -c +{start} -F -s 0.5 --pid={until} {log} 2>/dev/null; fi",
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


def cancel(config: Config, record: RunRecord, grace: float = 10.0) -> str:
    """Stop the job: SIGINT, then SIGTERM, then SIGKILL, each after `grace` seconds; mark it."""
    with open_host(config.host(record.host)) as host:
        outcome = backend_for(host.config).cancel(host, record.run_id, grace)
    if outcome == "missing":
        raise JobNotFound(f"run {record.run_id} not found on {record.host}")
    if outcome == "cancelled":
        record.state = "cancelled"
        record.ended_at = time.time()
        save_record(config, record)
    return outcome
