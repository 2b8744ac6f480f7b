"""The tmux backend: each run is a detached tmux session on an SSH host (or the `local` host).

States come from the run's files and `tmux ls` (see `orchestrator/status.py`): cancelled marker >
skipped > exit_code > session alive (queued while it waits, else running) > neither (lost).

One orch job runs on a host at a time: a launch on a busy host is refused, unless
`allow_concurrent`, or queued (`--queue`, `--after RUN`): the run's session starts at once and
waits on the host, so the queue works with the laptop closed: it writes the run ids it waits for
(the host's orch sessions at launch unless `allow_concurrent`, and the `--after` run) to its
`waiting` file, waits for each to write its exit_code or lose its session, and, after an
`--after` run that did not succeed, writes the `skipped` marker and exit code SKIPPED_EXIT
instead of starting.
"""

from __future__ import annotations

import time

from gpu_worker.contract.layout import EXIT_BUSY, EXIT_DONE

from ..errors import OrchError
from ..scripts import (
    SESSION_PREFIX,
    SKIPPED_EXIT,
    job_script,
    run_dir,
    status_script,
    write_exit_code,
)
from ..shell import Quoted, nest, quote, trusted
from ..states import CancelOutcome
from ..status import parse_status, to_status
from ..transport import CommandResult, Host
from .base import Backend, Launch, Options

BUSY_EXIT = EXIT_BUSY
DONE_EXIT = EXIT_DONE  # --resume of a run that already succeeded
SESSIONS = (
    f"tmux ls -F '#{{session_name}}' 2>/dev/null | grep -E '^{SESSION_PREFIX}[a-z0-9][a-z0-9_.-]*$'"
)


def wait_steps(host, after: str | None) -> tuple[Quoted, ...]:
    """The queued job's first steps: wait for the runs in `$D/waiting`; then, with `after`,
    start only if that run succeeded (exit 0, and results.json unless it ran its own command)."""
    lines = [
        'if [ -f "$D/waiting" ]; then',
        '  for w in $(cat "$D/waiting"); do',
        '    a="${D%/*}/$w"',
        f'    while [ ! -f "$a/exit_code" ] && tmux has-session -t "={SESSION_PREFIX}$w" '
        "2>/dev/null; do sleep 1; done",
        "  done",
        "fi",
    ]
    if after:
        said = quote(f"orch: skipped: run {after} did not succeed")
        lines += [
            f"a={run_dir(host, after)}",
            'if [ "$(cat "$a/exit_code" 2>/dev/null)" != 0 ] || [ -f "$a/cancelled" ] || '
            '[ -f "$a/skipped" ] || { [ ! -f "$a/results.json" ] && '
            """! grep -q '"own_command": true' "$a/run.json"; }; then""",
            f'  echo {said} >> "$D/log.txt"; touch "$D/skipped"; rm -f "$D/waiting" "$D/env"',
            f"  {write_exit_code(str(SKIPPED_EXIT))}; exit {SKIPPED_EXIT}",
            "fi",
        ]
    lines.append('rm -f "$D/waiting"')
    return tuple(trusted(line) for line in lines)


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
    """Runs as detached tmux sessions; one run per host unless allowed or queued."""

    name = "tmux"

    def _guard(self, host: Host, launches: list[Launch], options: Options) -> Quoted:
        """Refuse a busy host (unless allowed or queued) and a resume of a live or done run."""
        hc = host.config
        lines = [
            f"busy=$({SESSIONS} || true)",
            f'if [ -n "$busy" ] && [ {int(options.allow_concurrent or options.queued)} = 0 ]; then',
            f'  echo "$busy" | head -n 1; exit {BUSY_EXIT}',
            "fi",
        ]
        for launch in (ln for ln in launches if ln.resume):
            d, session = run_dir(hc, launch.run_id), quote(SESSION_PREFIX + launch.run_id)
            lines += [
                f"if tmux has-session -t ={session} 2>/dev/null; then echo {session}; "
                f"exit {BUSY_EXIT}; fi",
                f'if [ -f {d}/results.json ] && [ "$(cat {d}/exit_code 2>/dev/null)" = 0 ]; then '
                f"exit {DONE_EXIT}; fi",
            ]
        return trusted("\n".join(lines))

    def _undo(self, launches: list[Launch]) -> Quoted:
        """Kill the sessions started before the launch script failed."""
        return trusted(
            "".join(
                f"tmux kill-session -t ={quote(SESSION_PREFIX + ln.run_id)} 2>/dev/null; "
                for ln in launches
            )
        )

    def _run_json_extra(self, launch: Launch) -> dict:
        return {"tmux_session": SESSION_PREFIX + launch.run_id}

    def _start(self, host: Host, launches: list[Launch], options: Options) -> Quoted:
        """One session per run; a queued run first lists the runs it waits for."""
        hc, after = host.config, options.after.run_id if options.after else None
        lines = []
        for i, launch in enumerate(launches):
            lines.append(f"D={run_dir(hc, launch.run_id)}")
            if options.queued:  # behind the host's jobs, unless it may run beside them
                behind = "" if options.allow_concurrent else "$busy_ids "
                ids = f"{behind}{quote(after) if after else ''}"
                lines += [
                    f"busy_ids=$(printf '%s\\n' \"$busy\" | sed 's/^{SESSION_PREFIX}//' | "
                    f"grep -vx {quote(launch.run_id)} | tr '\\n' ' ' || true)",
                    f"ids=$(echo {ids})",
                    '[ -z "$ids" ] || printf \'%s\\n\' "$ids" > "$D/waiting"',
                ]
            script = job_script(
                hc,
                launch.run_id,
                self.command_for(launch, options),
                wait=wait_steps(hc, after) if options.queued else (),
                outputs=launch.resolved.outputs,
            )
            session = quote(SESSION_PREFIX + launch.run_id)
            lines.append(
                f"job_{i}=$(tmux new-session -d -P -F '#{{pane_pid}}' -s {session} \\\n"
                f"  {nest(script)})"
            )
        return trusted("\n".join(lines))

    def _refused(self, host: Host, launches: list[Launch], res: CommandResult) -> None:
        if res.exit_code == DONE_EXIT:
            raise OrchError(f"run {launches[0].run_id} already succeeded; nothing to resume")
        if res.exit_code == BUSY_EXIT:
            busy = res.text.strip().removeprefix(SESSION_PREFIX)
            raise OrchError(
                f"{host.name} is busy: orch job {busy} is still running; wait for it, "
                f"`orch cancel {busy}`, queue behind it with --queue, or pass --allow-concurrent"
            )

    def poll(self, host: Host, run_ids: list[str] | None) -> list:
        """Every run's files and the live tmux sessions, in one round trip."""
        res = host.run(status_script(host.config, run_ids))
        read_at = time.time()
        dump = parse_status(res.text, read_at)
        return [
            to_status(host.name, rid, seen, dump.now, read_at) for rid, seen in dump.runs.items()
        ]

    def cancel(self, host: Host, run_id: str, grace: float) -> CancelOutcome:
        """Signal the job's process group, then kill its tmux session."""
        script = cancel_script(run_dir(host.config, run_id), run_id, grace)
        res = host.run(script, timeout=3 * grace + host.config.timeout + 5)
        return CancelOutcome(res.text.strip())

    def follow_until(self, host: Host, run_id: str) -> Quoted:
        """The job wrapper's pid (it lives until exit_code is written)."""
        return trusted(f"$(cat {run_dir(host.config, run_id)}/pid)")
