"""`orch run --resume RUN`: start a stopped run again, in its own folder, from where it stopped.

The run keeps its id, its folder and the playbook.yaml it was started with; the worker runs with
`--resume`, so every (image, method) already in predictions.jsonl is kept and only the rest is
decoded (a line torn by the kill is dropped and decoded again). The old exit_code, cancelled
marker and results.json are removed first, in the same round trip that starts the job. A run
whose tmux session is still alive, one that succeeded, and one whose playbook has its own
`command:` are refused.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict

from .config import Config
from .errors import ConfigError, JobNotFound, OrchError
from .jobs import (
    ENV_FILE,
    SESSION_PREFIX,
    RunRecord,
    _job_script,
    env_file,
    run_dir,
    save_record,
)
from .playbooks import DEFAULT_COMMAND, render_command
from .sync import PushResult, push
from .transport import Host


def resume(config: Config, host: Host, record: RunRecord, on_push=None) -> RunRecord:
    """Push, then restart `record`'s worker with `--resume` in its existing run folder."""
    if host.name != record.host:
        raise ConfigError(f"run {record.run_id} ran on {record.host}, not {host.name}")
    pushed: PushResult = push(config, host)
    if on_push is not None:
        on_push(pushed)
    d = run_dir(host, record.run_id)
    session = SESSION_PREFIX + record.run_id
    command = render_command(DEFAULT_COMMAND, '"$D"/playbook.yaml', '"$D"') + " --resume"
    script = f"""set -e
D={d}
[ -f "$D/playbook.yaml" ] || {{ echo missing; exit 0; }}
if tmux has-session -t ={session} 2>/dev/null; then echo running; exit 0; fi
if grep -q '^command:' "$D/playbook.yaml"; then echo custom; exit 0; fi
if [ -f "$D/results.json" ] && [ "$(cat "$D/exit_code" 2>/dev/null)" = 0 ]; then
  echo done; exit 0
fi
rm -f "$D/exit_code" "$D/exit_code.tmp" "$D/cancelled" "$D/results.json" "$D/pid"
(umask 077 && cat > "$D/{ENV_FILE}")
tmux new-session -d -s {session} {shlex.quote(_job_script(host, record.run_id, command))}
echo resumed
"""
    outcome = host.run(script, stdin=env_file(host)).text.strip()
    if outcome == "missing":
        raise JobNotFound(f"run {record.run_id} has no folder on {host.name}; nothing to resume")
    if outcome == "running":
        raise OrchError(f"run {record.run_id} is still running on {host.name}")
    if outcome == "done":
        raise OrchError(f"run {record.run_id} already succeeded; nothing to resume")
    if outcome == "custom":
        raise ConfigError(
            f"run {record.run_id}: its playbook has its own `command:`; only gpu_worker runs resume"
        )
    record.state, record.exit_code, record.ended_at, record.fetched = "running", None, None, False
    record.code = asdict(pushed.identity)
    save_record(config, record)
    return record
