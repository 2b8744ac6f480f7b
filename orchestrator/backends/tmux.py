"""The tmux backend: each run is a detached tmux session on an SSH host (or the `local` host).

States come from the run's files and `tmux ls` (see `orchestrator/jobs.py`): cancelled marker >
exit_code > session alive (running) > neither (lost).
"""

from __future__ import annotations

import time

from gpu_worker.contract.layout import EXIT_BUSY, EXIT_DONE

from ..errors import ConfigError, OrchError
from ..scripts import (
    ENV_FILE,
    PRECHECK_EXIT,
    SESSION_PREFIX,
    env_file,
    job_script,
    json_with,
    run_dir,
    status_script,
    write_exit_code,
)
from ..shell import Quoted, nest, quote, remote, trusted
from ..states import CancelOutcome
from ..status import parse_status, to_status
from .base import Backend, Launch

BUSY_EXIT = EXIT_BUSY
DONE_EXIT = EXIT_DONE  # --resume of a run that already succeeded


def launch_script(host, launch: Launch, command: Quoted, allow_concurrent: bool) -> Quoted:
    """Shell that refuses a busy host, writes the env file (from stdin, mode 0600), playbook.yaml
    and run.json, runs the pre-launch check, then starts tmux. A new run's folder is removed
    again if anything before the start fails; a resumed run's folder is kept, and a resumed run
    whose session is still alive is refused."""
    hc = host.config
    run_id = launch.run_id
    session = quote(SESSION_PREFIX + run_id)
    record = {**launch.record, "tmux_session": SESSION_PREFIX + run_id}
    resume = bool(launch.record.get("resume"))
    keep = '[ -s "$D/playbook.yaml" ] || ' if resume else ""  # a resumed run keeps its playbook
    if resume:
        prepare = f"""if tmux has-session -t ={session} 2>/dev/null; then
  echo {session}; exit {BUSY_EXIT}
fi
if [ -f "$D/results.json" ] && [ "$(cat "$D/exit_code" 2>/dev/null)" = 0 ]; then
  exit {DONE_EXIT}
fi
mkdir -p "$D"
rm -f "$D/exit_code" "$D/exit_code.tmp" "$D/cancelled" "$D/results.json" "$D/pid"
"""
    else:
        prepare = f"""mkdir "$D"
trap 'set +e; [ -n "$ok" ] || {{ tmux kill-session -t ={session} 2>/dev/null; rm -rf "$D"; }}' EXIT
"""
    return trusted(f"""set -e
mkdir -p {remote(hc.remote_dir, "runs")}
busy=$(tmux ls -F '#{{session_name}}' 2>/dev/null | grep '^{SESSION_PREFIX}' || true)
if [ -n "$busy" ] && [ {int(allow_concurrent)} = 0 ]; then
  echo "$busy" | head -n 1; exit {BUSY_EXIT}
fi
D={run_dir(hc, run_id)}
{prepare}(umask 077 && cat > "$D/{ENV_FILE}")
{keep}printf '%s' {quote(launch.playbook_yaml)} > "$D/playbook.yaml"
{launch.precheck}
pid=$(tmux new-session -d -P -F '#{{pane_pid}}' -s {session} \
  {nest(job_script(hc, run_id, command))})
{json_with(record, "pid", "$pid")} > "$D/run.json"
echo "$pid"
ok=1
""")


def cancel_script(run_dir: Quoted, run_id: str, grace: float) -> Quoted:
    """SIGINT, then SIGTERM, then SIGKILL to the job's process group, each after `grace` s."""
    steps = max(1, int(grace * 10))
    return trusted(f"""D={run_dir}
[ -d "$D" ] || {{ echo missing; exit 0; }}
[ -f "$D/exit_code" ] && {{ echo finished; exit 0; }}
touch "$D/cancelled"
pid=$(cat "$D/pid" 2>/dev/null)
if [ -n "$pid" ]; then
  for sig in INT TERM KILL; do
    kill -s $sig -- "-$pid" 2>/dev/null || break
    i=0
    while kill -0 -- "-$pid" 2>/dev/null && [ $i -lt {steps} ]; do sleep 0.1; i=$((i+1)); done
    kill -0 -- "-$pid" 2>/dev/null || break
  done
fi
tmux kill-session -t ={quote(SESSION_PREFIX + run_id)} 2>/dev/null || true
[ -f "$D/exit_code" ] || {{ {write_exit_code("137")}; }}
echo cancelled
""")


class TmuxBackend(Backend):
    """Runs as detached tmux sessions; one run per host unless `allow_concurrent`."""

    name = "tmux"

    def submit(
        self, host, runs: list[Launch], command: Quoted, allow_concurrent: bool
    ) -> list[str]:
        """Start each run in its own tmux session; the ids are the sessions' pane pids."""
        ids = []
        for launch in runs:
            script = launch_script(host, launch, command, allow_concurrent)
            res = host.run(script, stdin=env_file(host.config), check=False)
            if res.exit_code == PRECHECK_EXIT:
                found = "; ".join(line for line in res.text.splitlines() if line.strip())
                playbook = launch.record.get("playbook")
                raise ConfigError(f"{host.name}: playbook {playbook}: {found}; nothing was started")
            if res.exit_code == DONE_EXIT:
                raise OrchError(f"run {launch.run_id} already succeeded; nothing to resume")
            if res.exit_code == BUSY_EXIT:
                busy = res.text.strip().removeprefix(SESSION_PREFIX)
                raise OrchError(
                    f"{host.name} is busy: orch job {busy} is still running; wait for it, "
                    f"`orch cancel {busy}`, or pass --allow-concurrent"
                )
            res.check()
            ids.append(res.text.strip())
            allow_concurrent = True  # the runs of one submission share the host on purpose
        return ids

    def poll(self, host, run_ids: list[str] | None) -> list:
        """Every run's files and the live tmux sessions, in one round trip."""
        res = host.run(status_script(host.config, run_ids))
        read_at = time.time()
        dump = parse_status(res.text, read_at)
        return [
            to_status(host.name, rid, seen, dump.now, read_at) for rid, seen in dump.runs.items()
        ]

    def cancel(self, host, run_id: str, grace: float) -> CancelOutcome:
        """Signal the job's process group, then kill its tmux session."""
        script = cancel_script(run_dir(host.config, run_id), run_id, grace)
        res = host.run(script, timeout=3 * grace + host.config.timeout + 5)
        return CancelOutcome(res.text.strip())

    def follow_until(self, host, run_id: str) -> Quoted:
        """The job wrapper's pid (it lives until exit_code is written)."""
        return trusted(f"$(cat {run_dir(host.config, run_id)}/pid)")
