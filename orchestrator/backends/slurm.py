"""The Slurm backend: a `backend: slurm` host is a cluster's login node reached over SSH.

The launch sequence is the base's (`base.Backend.submit`: folders, pre-check, run.json); the
start step writes a batch script and calls `sbatch --parsable` once: several runs of one
submission (the shards of a sharded run, named `<parent>-s<i>`) become one job array, task i
running shard i; a run queued `--after` another gets `--dependency=afterok:<job>` (Slurm drops
it when that job fails: state `skipped`). Resources come from orch.yaml's
`hosts.<name>.slurm` overlaid by the playbook's `slurm:` section, and go on sbatch's command line
(shell-quoted). The batch script runs the same wrapper as tmux: log.txt, exit_code.

`poll` reads every run's files and Slurm's view in one round trip: `squeue` for live jobs,
then `sacct` when accounting exists, else `scontrol show job` (kept for MinJobAge seconds).
Slurm states map onto orch's (see `STATES`); the run's own exit_code decides succeeded/failed
when Slurm says the job ended normally.
"""

from __future__ import annotations

import re
import time
from dataclasses import fields, replace

from gpu_worker.contract.layout import EXIT_BUSY, EXIT_SCHEDULER_DOWN, EXIT_SUBMIT

from ..config import SLURM_FIELDS, SlurmConfig
from ..errors import ConfigError, HostUnreachable, OrchError
from ..records import RunRecord, check_run_id
from ..scripts import ENV_FILE, job_steps, run_dir, status_script
from ..shell import Quoted, join, nest, quote, remote, trusted
from ..states import CancelOutcome, CheckStatus, RunState
from ..status import derive_state, parse_status, to_status
from .base import Backend, Launch, Options, SubmitRefused
from .slurm_states import parse_slurm, slurm_state

DOWN = "@down"  # a Slurm query failed: the scheduler's view is unknown, never "job gone"
SUBMIT_FAILED = EXIT_SUBMIT  # sbatch refused the job
SLURM_DOWN = EXIT_SCHEDULER_DOWN  # the scheduler did not answer
STILL_QUEUED = EXIT_BUSY  # --resume of a run whose job Slurm still lists
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:,=/+%@-]+$")
JOB_ID_RE = re.compile(r"^\d+(_\d+)?$")


def resources(host_settings: SlurmConfig, playbook: dict) -> dict[str, str]:
    """orch.yaml's `slurm:` for the host, overlaid by the playbook's `slurm:` section."""
    out = {f.name: getattr(host_settings, f.name) for f in fields(SlurmConfig)}
    book = playbook.get("slurm") or {}
    if not isinstance(book, dict):
        raise ConfigError("playbook: slurm: expected a mapping of sbatch resources")
    for key, value in book.items():
        if key not in SLURM_FIELDS:
            raise ConfigError(f"playbook: slurm.{key}: unknown; allowed: {', '.join(SLURM_FIELDS)}")
        out[key] = value
    clean = {}
    for key, value in out.items():
        if value is None:
            continue
        if not SAFE_VALUE.match(str(value)):
            raise ConfigError(f"slurm.{key}: '{value}' has characters sbatch would not accept")
        clean[key] = str(value)
    return clean


def sbatch_args(settings: dict[str, str], job_name: str, array_size: int | None) -> list[str]:
    """sbatch's options (without the script): `--parsable`, the name, resources, `--array`."""
    args = ["--parsable", f"--job-name={job_name}"]
    for key in SLURM_FIELDS:
        if key in settings:
            args.append(f"--{key.replace('_', '-')}={settings[key]}")
    if array_size is not None:
        args.append(f"--array=0-{array_size - 1}")
    return args


def batch_script(
    host, runs_dir: Quoted, run_id_expr: Quoted, command: Quoted, outputs: tuple[str, ...] = ()
) -> Quoted:
    """The batch script: the run's folder from `run_id_expr`, then the same steps as the tmux
    wrapper (`scripts.job_steps`).

    `run_id_expr` is shell text giving the run id (e.g. `'p-s'"$SLURM_ARRAY_TASK_ID"`). The
    script exits with the command's exit code, so Slurm's state and exit code are the job's.
    """
    head = [
        "#!/bin/bash",
        f'D={runs_dir}/{run_id_expr}; export ORCH_RUN_ID="${{D##*/}}"',
        'hostname > "$D/node"',
    ]
    return trusted("\n".join(head + job_steps(host.config, command, outputs=outputs) + [""]))


def sbatch_script(runs: list[Launch], batch: Quoted, args: list[str]) -> Quoted:
    """Write the batch file into `$R` (the runs folder), `sbatch` it once (exit 64 with sbatch's
    words when it refuses), and set `job_<i>` to run i's job (or array task) id."""
    array = len(runs) > 1
    name = f".sbatch-{runs[0].run_id}.sh"
    lines = [
        f"printf '%s' {nest(batch)} > \"$R\"/{quote(name)}",
        "set +e",
        f"out=$(sbatch {join(args)} "
        f'--output="$R"/{quote(_output(runs[0].run_id, array))} "$R"/{quote(name)} 2>&1)',
        f'if [ $? != 0 ]; then echo "$out"; exit {SUBMIT_FAILED}; fi',
        "set -e",
        "jid=${out%%;*}",
    ]
    lines += [f'job_{i}="${{jid}}_{i}"' if array else f'job_{i}="$jid"' for i in range(len(runs))]
    return trusted("\n".join(lines))


def dependency_args(after: RunRecord) -> list[str]:
    """sbatch's options for a run queued after `after`: it starts when that job succeeds, and
    Slurm drops it (skipped) when that job fails or is cancelled."""
    if after.backend != "slurm" or not after.job_id or not JOB_ID_RE.match(after.job_id):
        raise ConfigError(f"--after {after.run_id}: not a Slurm job of this host (no job id)")
    return [f"--dependency=afterok:{after.job_id}", "--kill-on-invalid-dep=yes"]


CANCEL_SETTLE_S = 30  # how long a resume waits for a cancelled job to leave Slurm's queue


def still_queued_check(d: Quoted) -> str:
    """Shell lines refusing to resume the run in folder `d` while Slurm still lists its job
    (exit STILL_QUEUED) or cannot say (exit SLURM_DOWN): one job per run folder, ever. A job
    `orch cancel` stopped is given `CANCEL_SETTLE_S` seconds to leave the queue (Slurm lists it
    while it completes)."""
    job = f'sed -n \'s/.*"slurm_job": *"\\([0-9_]*\\)".*/\\1/p\' {d}/run.json'
    return f"""job=$({job} 2>/dev/null || true)
waited=0
while [ -n "$job" ]; do
  if ! q=$(squeue -h -r -u "$(id -un)" -o %i 2>&1); then
    printf '%s\\n' "$q" | head -n 1; exit {SLURM_DOWN}
  fi
  printf '%s\\n' "$q" | grep -qx -- "$job" || break
  if [ -f {d}/cancelled ] && [ "$waited" -lt {CANCEL_SETTLE_S} ]; then
    waited=$((waited + 1)); sleep 1; continue
  fi
  echo "$job"; exit {STILL_QUEUED}
done"""


def _output(first_run_id: str, array: bool) -> str:
    """Where Slurm writes the job's own stdout (startup errors): slurm.out in the run folder."""
    if array:
        return f"{first_run_id.removesuffix('-s0')}-s%a/slurm.out"
    return f"{first_run_id}/slurm.out"


def poll_script(host, run_ids: list[str] | None) -> Quoted:
    """Slurm's view (squeue, then sacct or scontrol) first, then the run files (scripts.py)."""
    names = [quote(check_run_id(r)) for r in run_ids] if run_ids is not None else ["*"]
    records = " ".join(f"{n}/run.json" for n in names)
    slurm = f"""cd {remote(host.config.remote_dir, "runs")} 2>/dev/null || exit 0
ids=$(sed -n 's/.*"slurm_job": *"\\([0-9]*\\).*/\\1/p' {records} 2>/dev/null | sort -u)
if [ -n "$ids" ]; then
  if sq=$(squeue -h -r -u "$(id -un)" -o '@sq %i|%T|%r' 2>&1); then
    [ -z "$sq" ] || printf '%s\\n' "$sq"
  else
    echo "{DOWN} squeue: $(printf '%s' "$sq" | head -n 1)"
  fi
  list=$(echo $ids | tr ' ' ,)
  if acct=$(sacct -n -X -P -j "$list" -o JobID,State,ExitCode,Reason 2>/dev/null) &&
     [ -n "$acct" ]; then
    printf '%s\\n' "$acct" | sed 's/^/@sa /'
  else
    alt=$(echo $ids | tr ' ' '|')
    if sc=$(scontrol show job -o 2>&1); then
      printf '%s\\n' "$sc" | grep -E "JobId=($alt) " | sed 's/^/@sc /'
    else
      echo "{DOWN} scontrol: $(printf '%s' "$sc" | head -n 1)"
    fi
  fi
fi
"""
    return trusted(slurm + status_script(host.config, run_ids))


class SlurmBackend(Backend):
    """Runs as Slurm batch jobs (arrays for sharded runs), submitted on the login node."""

    name = "slurm"
    job_key = "slurm_job"
    job_key_is_string = True

    def _start(self, host, launches: list[Launch], options: Options) -> Quoted:
        """One sbatch call: a job array for several runs, `--dependency` for `--after`."""
        settings = resources(host.config.slurm, launches[0].resolved.doc)
        parent = launches[0].run_id.removesuffix("-s0") if len(launches) > 1 else launches[0].run_id
        if len(launches) > 1:
            expected = [f"{parent}-s{i}" for i in range(len(launches))]
            if [r.run_id for r in launches] != expected:
                raise OrchError(f"a job array needs runs named {parent}-s0..s{len(launches) - 1}")
            run_id_expr = trusted(quote(f"{parent}-s") + '"$SLURM_ARRAY_TASK_ID"')
        else:
            run_id_expr = quote(parent)
        runs_dir = remote(host.config.remote_dir, "runs")
        command = self.command_for(launches[0], options)
        batch = batch_script(host, runs_dir, run_id_expr, command, launches[0].resolved.outputs)
        args = sbatch_args(settings, f"orch-{parent}", len(launches) if len(launches) > 1 else None)
        if options.after is not None:
            args += dependency_args(options.after)
        return sbatch_script(launches, batch, args)

    def _job_id(self, host, printed: str) -> str:
        if not JOB_ID_RE.match(printed):
            raise OrchError(f"{host.name}: sbatch answered '{printed[:80]}', not a job id")
        return printed

    def _refused(self, host, launches: list[Launch], res) -> None:
        said = res.text.strip()
        if res.exit_code == SUBMIT_FAILED:
            raise SubmitRefused(f"{host.name}: sbatch refused the job: {said[-300:]}")
        if res.exit_code == SLURM_DOWN:
            raise HostUnreachable(
                f"{host.name}: Slurm did not answer ({said[:200]}); not resuming until it "
                "confirms the run's job ended"
            )
        if res.exit_code == STILL_QUEUED:
            raise OrchError(
                f"{host.name}: Slurm job {said} of this run is still queued or running; "
                "wait for it or `orch cancel` it first"
            )

    def _guard(self, host, launches: list[Launch], options: Options) -> Quoted:
        """A resumed run is refused while Slurm still lists its job or cannot say."""
        checks = [
            still_queued_check(run_dir(host.config, launch.run_id))
            for launch in launches
            if launch.resume
        ]
        return trusted("\n".join(checks) or ":")

    def poll(self, host, run_ids: list[str] | None) -> list:
        """The runs' files and Slurm's states in one round trip (see `slurm_state`)."""
        res = host.run(poll_script(host, run_ids))
        down = [line for line in res.text.splitlines() if line.startswith(DOWN + " ")]
        if down:  # a run Slurm did not report on is unknown, not lost: say so, exit 3
            raise HostUnreachable(
                f"{host.name}: Slurm did not answer ({down[0][len(DOWN) + 1 :][:200]}); "
                "the runs' states are unknown until it does"
            )
        read_at = time.time()
        dump = parse_status(res.text, read_at)
        slurm = parse_slurm(res.text)
        out = []
        for rid, seen in dump.runs.items():
            seen.alive = True  # tmux plays no part: Slurm's state decides below
            base = to_status(host.name, rid, seen, dump.now, read_at)
            job_id = seen.info.get("slurm_job")
            state, note = slurm_state(derive_state(seen), seen, slurm.get(str(job_id)))
            code = base.exit_code
            if code is None and job_id in slurm and state == RunState.FAILED:
                code = slurm[job_id].exit_code
            out.append(
                replace(
                    base,
                    state=state,
                    note=note or base.note,
                    exit_code=code,
                    eta_s=base.eta_s if state == "running" else None,
                )
            )
        return out

    def cancel(self, host, run_id: str, grace: float) -> CancelOutcome:
        """Mark the run cancelled and `scancel` its job (or array task)."""
        d = run_dir(host.config, run_id)
        script = f"""D={d}
[ -d "$D" ] || {{ echo missing; exit 0; }}
[ -f "$D/exit_code" ] && {{ echo finished; exit 0; }}
job=$(sed -n 's/.*"slurm_job": *"\\([0-9_]*\\)".*/\\1/p' "$D/run.json")
[ -n "$job" ] || {{ echo missing; exit 0; }}
touch "$D/cancelled"
scancel "$job" || exit 1
rm -f "$D/{ENV_FILE}"  # a job cancelled before it started never read its secrets
echo cancelled
"""
        return CancelOutcome(host.run(script).text.strip())

    def follow_until(self, host, run_id: str) -> Quoted:
        """A watcher on the login node that ends when the run's exit_code or marker appears,
        or its job leaves Slurm's queue without one (dropped: a skipped `--after` run)."""
        d = run_dir(host.config, run_id)
        job = f"""sed -n 's/.*"slurm_job": *"\\([0-9_]*\\)".*/\\1/p' {d}/run.json"""
        queued = 'squeue -h -j "$job" -o %i 2>/dev/null | grep -q .'
        return trusted(
            f"$( (job=$({job}); while [ ! -f {d}/exit_code ] && [ ! -f {d}/cancelled ] && "
            f'{{ [ -z "$job" ] || {queued}; }}; do sleep 1; done) >/dev/null 2>&1 & echo $!)'
        )


def doctor_script(settings: SlurmConfig) -> str:
    """Lines `slurm_<tool>=...` for `orch doctor`: the client tools, accounting, the partition."""
    part = quote(settings.partition) if settings.partition else ""
    return "\n".join(
        [
            *(
                f'echo "slurm_{t}=$(command -v {t} >/dev/null 2>&1 && echo yes || echo missing)"'
                for t in ("sbatch", "squeue", "scancel", "scontrol")
            ),
            "if a=$(sacct -n -X -P -S now -o JobID 2>&1); then echo slurm_sacct=yes; "
            'else echo "slurm_sacct=$(echo "$a" | head -n 1)"; fi',
            f'echo "slurm_partition=$(sinfo -h -o "%P %a %D %G" {"-p " + part if part else ""}'
            ' 2>&1 | head -n 1)"',
        ]
    )


def doctor_checks(
    seen: dict[str, str], settings: SlurmConfig
) -> list[tuple[str, CheckStatus, str]]:
    """(name, status, detail) rows from `doctor_script`'s output."""
    rows = []
    for tool in ("sbatch", "squeue", "scancel", "scontrol"):
        ok = seen.get(f"slurm_{tool}") == "yes"
        rows.append(
            (
                tool,
                CheckStatus.OK if ok else CheckStatus.FAIL,
                "found" if ok else "missing on the login node",
            )
        )
    acct = seen.get("slurm_sacct", "")
    rows.append(
        (
            "sacct",
            CheckStatus.OK if acct == "yes" else CheckStatus.WARN,
            "accounting available"
            if acct == "yes"
            else f"no accounting ({acct or 'missing'}): finished jobs are read with scontrol",
        )
    )
    part = seen.get("slurm_partition", "").split()
    want = settings.partition
    if not part or (want and part[0].rstrip("*") != want):
        rows.append(
            ("partition", CheckStatus.FAIL, f"{want or 'default'}: not found ({' '.join(part)})")
        )
    else:
        name, avail, nodes, gres = (part + ["", "", ""])[:4]
        status = CheckStatus.OK if avail == "up" else CheckStatus.FAIL
        detail = f"{name.rstrip('*')} {avail}, {nodes} node(s), gres {gres.replace('(null)', '-')}"
        rows.append(("partition", status, detail))
    return rows
