"""The one interface every job backend implements, and the one launch sequence.

A backend starts runs on a host and reports on them; it never pushes code (jobs.py does, first).
- `submit(host, launches, options)` is the same for every backend, in one round trip: the
  backend's guard (`_guard`: the tmux busy check), each run's folder with its env file (from
  stdin, mode 0600) and playbook.yaml, the launch pre-check (`scripts.precheck_script`, unless the
  run resumes, runs its own command or is queued: then the job runs it when it starts), the
  backend's start step (`_start`: tmux sessions, or one `sbatch`, a job array for several runs),
  then run.json with the scheduler's id, written atomically. It returns the launches' records
  with `job_id` set (a tmux pane pid, a Slurm job id); a refused launch leaves no new folder.
- `poll(host, run_ids)`: the `RunStatus` of the named runs (None: every run on the host) in one
  round trip to the host, however many runs.
- `cancel(host, run_id, grace)`: stop one run and mark it cancelled; returns what happened
  (a `CancelOutcome`: cancelled, finished, missing).
- `follow_until(host, run_id)`: shell text giving a pid that ends with the run, for `tail --pid`.
Every script a backend sends is `Quoted` text built with `orchestrator/shell.py`.
- `FETCH_FILES`: the files of a run folder that `orch fetch` brings back.

Both backends keep the same remote layout: `<remote_dir>/runs/<run_id>/` holds run.json,
playbook.yaml, log.txt, progress.json, predictions.jsonl, results.json and exit_code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace

from ..errors import ConfigError, OrchError
from ..playbooks import Resolved
from ..records import RunRecord
from ..scripts import (
    ENV_FILE,
    PRECHECK_EXIT,
    checked_command,
    env_file,
    job_command,
    json_with,
    precheck_script,
    refs_check,
    run_dir,
)
from ..shell import Quoted, quote, remote, trusted
from ..states import CancelOutcome, RunState
from ..transport import CommandResult, Host

FETCH_FILES = (
    "results.json",
    "predictions.jsonl",
    "log.txt",
    "playbook.yaml",
    "run.json",
    "exit_code",
)


@dataclass(frozen=True)
class Launch:
    """One run to start: its record (run.json is made from it), the resolved playbook, and
    whether it continues a stopped run in its folder."""

    record: RunRecord
    resolved: Resolved
    resume: bool = False

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.record.run_id

    def run_json(self) -> dict:
        """What run.json on the host says about the run (so any laptop can find it)."""
        r = self.record
        return {
            "run_id": r.run_id,
            "playbook": r.playbook,
            "state": RunState.RUNNING,
            "started_at": r.started_at,
            "host": r.host,
            "hourly_rate": r.hourly_rate,
            "overrides": r.overrides,
            "code": asdict(r.code) if r.code else None,
            "backend": r.backend,
            "parent": r.parent,
            "shard": r.shard,
            "num_shards": r.num_shards,
            "own_command": self.resolved.own_command,
            "after": r.after,
            "remote_dir": r.remote_dir,
        }


@dataclass(frozen=True)
class Options:
    """How one submission starts: beside a running job (`allow_concurrent`), queued behind the
    host's jobs (`queue`), or queued after one run (`after`: it starts only if that succeeds)."""

    allow_concurrent: bool = False
    queue: bool = False
    after: RunRecord | None = None

    @property
    def queued(self) -> bool:
        """Whether the runs wait on the host before they start."""
        return self.queue or self.after is not None


class SubmitRefused(OrchError):
    """The scheduler refused the job (sbatch failed): nothing runs, the run is recorded failed."""


class Backend(ABC):
    """Start, watch and stop runs on one kind of host (see the module docstring)."""

    name: str = ""
    job_key = "pid"  # run.json's key for the scheduler's id
    job_key_is_string = False

    def submit(self, host: Host, launches: list[Launch], options: Options) -> list[RunRecord]:
        """Start the runs in one round trip (see the module docstring)."""
        script = self.submit_script(host, launches, options)
        res = host.run(script, stdin=env_file(host.config), check=False)
        if res.exit_code == PRECHECK_EXIT:
            found = "; ".join(line for line in res.text.splitlines() if line.strip())
            playbook = launches[0].record.playbook
            raise ConfigError(f"{host.name}: playbook {playbook}: {found}; nothing was started")
        self._refused(host, launches, res)
        res.check()
        printed = res.text.strip().splitlines()[-len(launches) :]
        return [
            replace(launch.record, job_id=self._job_id(host, line))
            for launch, line in zip(launches, printed, strict=True)
        ]

    @staticmethod
    def command_for(launch: Launch, options: Options) -> Quoted:
        """The job's command; a queued gpu_worker run checks its playbook when it starts."""
        command = job_command(launch.resolved.command, resume=launch.resume)
        if options.queued and not (launch.resume or launch.resolved.own_command):
            return checked_command(command)
        return command

    def submit_script(self, host: Host, launches: list[Launch], options: Options) -> Quoted:
        """The one launch script: guard, folders, pre-check, start, run.json (see above)."""
        hc = host.config
        lines = ["set -e", f"R={remote(hc.remote_dir, 'runs')}", 'mkdir -p "$R"', "new=''"]
        lines.append(str(self._guard(host, launches, options)))
        envs = " ".join(f"{run_dir(hc, launch.run_id)}/{ENV_FILE}" for launch in launches)
        # the secrets never outlive a failed start, whatever step fails (a resumed run's too)
        undo = f'{self._undo(launches)} rm -f "$R/.{ENV_FILE}-$$" {envs}; '
        undo += 'for d in $new; do rm -rf "$d"; done;'
        lines.append(f'orch_undo() {{ set +e; [ -n "$ok" ] || {{ {undo} }}; }}')
        lines.append("trap orch_undo EXIT")
        lines.append(f'(umask 077 && cat > "$R/.{ENV_FILE}-$$")')
        for launch in launches:
            lines.append(str(self._prepare(host, launch, options)))
        lines.append(f'rm -f "$R/.{ENV_FILE}-$$"')
        lines.append(str(self._start(host, launches, options)))
        for i, launch in enumerate(launches):
            doc = {**launch.run_json(), **self._run_json_extra(launch)}
            record = json_with(doc, self.job_key, f"$job_{i}", string=self.job_key_is_string)
            lines += [
                f"D={run_dir(hc, launch.run_id)}",
                f'{record} > "$D/.run.json.tmp"',
                'mv -f "$D/.run.json.tmp" "$D/run.json"',
            ]
        lines += [*(f'echo "$job_{i}"' for i in range(len(launches))), "ok=1", ""]
        return trusted("\n".join(lines))

    def _prepare(self, host: Host, launch: Launch, options: Options) -> Quoted:
        """One run's folder, env file and playbook.yaml, then its pre-check. A resumed run keeps
        its folder and playbook; a new one is removed again if anything fails before the start."""
        hc = host.config
        lines = [f"D={run_dir(hc, launch.run_id)}"]
        if launch.resume:
            lines += [
                'mkdir -p "$D"',
                'rm -f "$D/exit_code" "$D/exit_code.tmp" "$D/cancelled" "$D/results.json" '
                '"$D/pid" "$D/skipped" "$D/waiting"',
            ]
        else:
            lines += ['mkdir "$D"', 'new="$new $D"']
        lines.append(f'cp -p "$R/.{ENV_FILE}-$$" "$D/{ENV_FILE}"')
        write = [  # separate commands, so that `set -e` stops at either
            f"printf '%s' {quote(launch.resolved.to_yaml())} > \"$D/.playbook.tmp\"",
            'mv -f "$D/.playbook.tmp" "$D/playbook.yaml"',
        ]
        if launch.resume:  # a resumed run keeps its playbook
            write = ['if [ ! -s "$D/playbook.yaml" ]; then', *write, "fi"]
        lines += write
        if launch.resolved.refs:
            lines.append(str(refs_check(hc, launch.resolved.refs)))
        if not (launch.resume or launch.resolved.own_command or options.queued):
            lines.append(str(precheck_script(hc)))
        return trusted("\n".join(lines))

    def _guard(self, host: Host, launches: list[Launch], options: Options) -> Quoted:
        """Shell run before any folder is made (may exit with a code `_refused` explains)."""
        return trusted(":")

    def _undo(self, launches: list[Launch]) -> Quoted:
        """Shell (ending in `;`) undoing a start when the launch script fails after it."""
        return trusted("")

    def _run_json_extra(self, launch: Launch) -> dict:
        """Backend-specific fields of run.json."""
        return {}

    def _job_id(self, host: Host, printed: str) -> str:
        """The scheduler's id from the line the launch script printed for a run."""
        return printed.strip()

    def _refused(self, host: Host, launches: list[Launch], res: CommandResult) -> None:  # noqa: B027
        """Raise the one-line error for a launch the guard or the start refused."""

    @abstractmethod
    def _start(self, host: Host, launches: list[Launch], options: Options) -> Quoted:
        """Shell starting the prepared runs, setting `job_<i>` to run i's scheduler id."""

    @abstractmethod
    def poll(self, host: Host, run_ids: list[str] | None) -> list:
        """Status of the named runs (or all) on this host, in one round trip."""

    @abstractmethod
    def cancel(self, host: Host, run_id: str, grace: float) -> CancelOutcome:
        """Stop one run; cancelled, finished or missing."""

    @abstractmethod
    def follow_until(self, host: Host, run_id: str) -> Quoted:
        """Shell words giving a pid that lives exactly as long as the run (for `tail --pid`)."""
