"""The shell scripts orch sends to a host for a run, built by pure functions.

Each takes the host's configuration and plain values and returns `Quoted` shell text (see
`orchestrator/shell.py`): every path and value in it is quoted there, nothing is templated by
string replacement. tests/test_scripts.py holds a golden copy of each. The tmux launch wrapper
and cancel live with their backend (`backends/tmux.py`), Slurm's in `backends/slurm.py`.

On the host, `<remote_dir>/runs/<run_id>/` holds run.json, playbook.yaml, log.txt, pid,
progress.json, results.json, exit_code, `cancelled` and, until the job has read it, `env`.
"""

from __future__ import annotations

import json
import re

from .config import HostConfig
from .records import check_run_id
from .shell import Quoted, quote, remote, trusted

ENV_FILE = "env"
LOG_TAIL_LINES = 10
PRECHECK_EXIT = 77  # gpu_worker.precheck.EXIT_PROBLEM: a model folder or adapter is missing
SESSION_PREFIX = "orch-"
JOB_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def run_dir(host: HostConfig, run_id: str) -> Quoted:
    """`<remote_dir>/runs/<run_id>`, quoted."""
    return remote(host.remote_dir, "runs", check_run_id(run_id))


def env_file(host: HostConfig) -> bytes:
    """The host's `env:` values as a sourceable file. It reaches the host on stdin and is kept
    mode 0600 in the run folder until the job reads it: secrets never appear in a command line
    (`ps`), only in the job's own environment."""
    lines = [f"export {k}={quote(v)}" for k, v in host.env.items()]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def write_exit_code(value: str) -> Quoted:
    """The one shell idiom writing `$D/exit_code` atomically; `value` is shell text of orch's
    own (`$code`, `137`)."""
    return trusted(f'echo {value} > "$D/exit_code.tmp" && mv -f "$D/exit_code.tmp" "$D/exit_code"')


def json_with(doc: dict, key: str, shell_value: str, *, string: bool = False) -> Quoted:
    """Shell words printing `doc` as JSON with `key` (last) set to the value of the shell
    expression `shell_value` (such as `$pid`; a JSON string with `string`), with no text
    replacement on the JSON. The value must be digits, `_` or letters: it is not escaped."""
    body = json.dumps({k: v for k, v in doc.items() if k != key})
    head = body[:-1] + (", " if len(body) > 2 else "") + json.dumps(key) + ": "
    fmt = '%s\\"%s\\"}' if string else "%s%s}"
    return trusted(f"printf '{fmt}' {quote(head)} \"{shell_value}\"")


def python_setup(host: HostConfig) -> Quoted:
    """Shell lines setting ORCH_PYTHON: the host's venv, else its configured interpreter."""
    venv_python = remote(host.remote_dir, "venv", "bin", "python")
    return trusted(
        f"ORCH_PYTHON={venv_python}\n"
        f'[ -x "$ORCH_PYTHON" ] || ORCH_PYTHON=$(command -v {quote(host.python)})'
    )


def precheck_script(host: HostConfig) -> Quoted:
    """Shell lines run before the job starts: `gpu_worker.precheck` on `$D/playbook.yaml`. On a
    problem the run folder is removed and the script exits PRECHECK_EXIT with the problems on
    stdout, so a missing checkpoint is a one-line error of `orch run`, not a failed job."""
    return trusted(f"""rc=0
msg=$(cd {remote(host.remote_dir, "code")} && {{
{python_setup(host)}
"$ORCH_PYTHON" -m gpu_worker.precheck "$D/playbook.yaml" 2>&1; }}) || rc=$?
if [ "$rc" != 0 ]; then
  rm -rf "$D"; printf '%s\\n' "$msg"; [ "$rc" = {PRECHECK_EXIT} ] || printf '%s\\n' "$msg" >&2
  exit "$rc"
fi
""")


PLACEHOLDERS = {
    "{python}": trusted('"$ORCH_PYTHON"'),
    "{playbook}": trusted('"$D"/playbook.yaml'),
    "{out}": trusted('"$D"'),
}


def job_command(template: str, *, resume: bool = False) -> Quoted:
    """The job's command from a playbook's `command:` template, its `{python}`, `{playbook}` and
    `{out}` filled with the job's own shell words (the template is shell written by the
    playbook's author and runs as it is; no value from elsewhere is pasted into it)."""
    pieces = re.split("(" + "|".join(re.escape(k) for k in PLACEHOLDERS) + ")", template)
    text = "".join(PLACEHOLDERS.get(p, p) for p in pieces)
    return trusted(text + " --resume" if resume else text)


def job_steps(host: HostConfig, command: Quoted) -> list[Quoted]:
    """The job's shell steps once `$D` (the run folder) and ORCH_RUN_ID are set, shared by the
    tmux wrapper and the Slurm batch script: pid, cd into the code, the env file, the command
    (all of it, `a; b` included) with its output appended to log.txt, its status to exit_code.
    No secret is part of this text (see `env_file`)."""
    if not isinstance(command, Quoted):
        raise TypeError("the job's command must be built by orchestrator.shell")
    exports = " ".join(f"{k}={quote(v)}" for k, v in JOB_ENV.items())
    lines = [
        'echo $$ > "$D/pid"',
        f'cd "$(cd {remote(host.remote_dir, "code")} && pwd -P)" 2>> "$D/log.txt" || '
        f"{{ {write_exit_code('1')}; exit 1; }}",
        "trap 'true' INT TERM",  # the wrapper outlives SIGINT/SIGTERM to record exit_code
        f'[ -f "$D/{ENV_FILE}" ] && . "$D/{ENV_FILE}"; rm -f "$D/{ENV_FILE}"',
        f'export {exports} ORCH_RUN_DIR="$D"',
        python_setup(host),
        "export ORCH_PYTHON",
        f'{{ {command}\n}} >> "$D/log.txt" 2>&1 < /dev/null',
        "code=$?",
        write_exit_code("$code"),
        "exit $code",
    ]
    return [trusted(line) for line in lines]


def job_script(host: HostConfig, run_id: str, command: Quoted) -> Quoted:
    """What tmux runs: `job_steps` for the run folder of `run_id`."""
    head = [f"D={run_dir(host, run_id)}", f"export ORCH_RUN_ID={quote(run_id)}"]
    return trusted("\n".join(head + job_steps(host, command)))


def status_script(host: HostConfig, run_ids: list[str] | None) -> Quoted:
    """A shell script that reports every run's files with a fixed handful of processes.

    `grep -H ''` prints each small file's line prefixed with its path, for all runs at once, and
    `grep -c ''` says which marker files exist; a failed run's log tail is the only per-run
    process. The cost stays flat as runs accumulate on a host. Parsed by `status.parse_status`.
    """
    names = [quote(check_run_id(r)) for r in run_ids] if run_ids is not None else [trusted("*")]

    def each(leaf: str) -> str:
        return " ".join(f"{n}/{leaf}" for n in names)

    return trusted(f"""cd {remote(host.remote_dir, "runs")} 2>/dev/null || exit 0
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
""")


def log_tail_script(host: HostConfig, run_id: str, lines: int) -> Quoted:
    """Print the log's size in bytes on the first line, then its last `lines` lines (of exactly
    that many bytes, so following resumes where this stopped); `gone` alone when the run's
    folder does not exist."""
    log = run_dir(host, run_id) + "/log.txt"
    return trusted(
        f"[ -d {run_dir(host, run_id)} ] || {{ echo gone; exit 0; }}; "
        f"s=$(stat -c %s {log} 2>/dev/null || echo 0); echo $s; "
        f"head -c $s {log} 2>/dev/null | tail -n {int(lines)}"
    )


def log_follow_script(host: HostConfig, run_id: str, offset: int, until: Quoted) -> Quoted:
    """Stream the log from byte `offset` until the process `until` (shell text giving a pid,
    from the backend) ends; a finished run's log is printed to its end at once."""
    d = run_dir(host, run_id)
    log, start = f"{d}/log.txt", int(offset) + 1
    return trusted(
        f"if [ -f {d}/exit_code ]; then tail -c +{start} {log}; else "
        f"tail -c +{start} -F -s 0.5 --pid={until} {log} 2>/dev/null; fi"
    )
