"""The shell scripts orch sends to a host for a run, built by pure functions.

Each takes the host's configuration and plain values and returns `Quoted` shell text (see
`orchestrator/shell.py`): every path and value in it is quoted there, nothing is templated by
string replacement. tests/test_scripts.py holds a golden copy of each. The tmux launch wrapper
and cancel live with their backend (`backends/tmux.py`), Slurm's in `backends/slurm.py`.

On the host, `<remote_dir>/runs/<run_id>/` holds run.json, playbook.yaml, log.txt, pid, tree
(the code tree the job runs in), progress.json, results.json, exit_code, `cancelled` and, until
the job has read it, `env`; a `command:` job's progress.txt (`trainlog.py`); a queued run's
`waiting` (the run ids it waits for, until it starts) or `skipped` (the run it was queued after
did not succeed).
"""

from __future__ import annotations

import json
import re

from gpu_worker.contract.layout import CODE_DIR, EXIT_PRECHECK, RUNS_DIR, VENV_DIR

from .config import HostConfig
from .records import check_run_id
from .shell import Quoted, join, quote, remote, trusted
from .trainlog import PROGRESS_TXT, extract_script
from .worker import worker_dir

ENV_FILE = "env"
LOG_TAIL_LINES = 10
MAX_STATUS_KB = 64  # a larger run.json, progress.json or exit_code is the run's error, not read
PRECHECK_EXIT = EXIT_PRECHECK  # a model folder or adapter is missing
SESSION_PREFIX = "orch-"
SKIPPED_EXIT = 78  # exit_code of a run skipped because the run it was queued after failed
JOB_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def run_dir(host: HostConfig, run_id: str) -> Quoted:
    """`<remote_dir>/runs/<run_id>`, quoted."""
    return remote(host.remote_dir, RUNS_DIR, check_run_id(run_id))


def resolve_dir_script(host: HostConfig) -> Quoted:
    """Make the host's remote_dir and print its absolute, symlink-free path (one line)."""
    top = remote(host.remote_dir)
    return trusted(f"mkdir -p -- {top} && cd -- {top} && pwd -P")


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
    """Shell lines setting ORCH_PYTHON (the host's venv, else its configured interpreter) and
    putting this orch's shipped worker (`worker.worker_dir`) first on PYTHONPATH."""
    venv_python = remote(host.remote_dir, VENV_DIR, "bin", "python")
    return trusted(
        f"ORCH_PYTHON={venv_python}\n"
        f'[ -x "$ORCH_PYTHON" ] || ORCH_PYTHON=$(command -v {quote(host.python)})\n'
        f'export PYTHONPATH={worker_dir(host.remote_dir)}"${{PYTHONPATH:+:$PYTHONPATH}}"'
    )


def precheck_script(host: HostConfig) -> Quoted:
    """Shell lines run before the job starts: `gpu_worker.precheck` on `$D/playbook.yaml`. On a
    problem the run folder is removed and the script exits PRECHECK_EXIT with the problems on
    stdout, so a missing checkpoint is a one-line error of `orch run`, not a failed job."""
    return trusted(f"""rc=0
msg=$(cd {remote(host.remote_dir, CODE_DIR)} && {{
{python_setup(host)}
"$ORCH_PYTHON" -m gpu_worker.precheck "$D/playbook.yaml" 2>&1; }}) || rc=$?
if [ "$rc" != 0 ]; then
  rm -rf "$D"; printf '%s\\n' "$msg"; [ "$rc" = {PRECHECK_EXIT} ] || printf '%s\\n' "$msg" >&2
  exit "$rc"
fi
""")


def refs_check(host: HostConfig, run_ids: tuple[str, ...]) -> Quoted:
    """Shell lines refusing the launch (PRECHECK_EXIT, the problem on stdout) when a run the
    playbook's model.checkpoints names has no folder on this host."""
    lines = []
    for r in run_ids:
        said = quote(f"model.checkpoints: run {r}: no run folder on this host")
        lines.append(f"[ -d {run_dir(host, r)} ] || {{ echo {said}; exit {PRECHECK_EXIT}; }}")
    return trusted("\n".join(lines))


def checked_command(command: Quoted) -> Quoted:
    """`command` preceded by the pre-check, for a run that waits on the host (its checkpoints
    may not exist at launch): a problem ends the job with PRECHECK_EXIT, the lines in log.txt."""
    return trusted(
        'if "$ORCH_PYTHON" -m gpu_worker.precheck "$D"/playbook.yaml; then\n'
        f"{command}\nelse (exit {PRECHECK_EXIT}); fi"
    )


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


def job_steps(
    host: HostConfig,
    command: Quoted,
    *,
    wait: tuple[Quoted, ...] = (),
    outputs: tuple[str, ...] = (),
) -> list[Quoted]:
    """The job's shell steps once `$D` (the run folder) and ORCH_RUN_ID are set, shared by the
    tmux wrapper and the Slurm batch script: pid, the `wait` steps (a queued run), cd into the
    code, the env file, the command (all of it, `a; b` and `exit N` included, in a subshell)
    with its output appended to log.txt, then its progress lines (progress.txt), its `outputs`
    listed in run.json, and its status to exit_code. No secret is part of this text (see
    `env_file`)."""
    if not isinstance(command, Quoted):
        raise TypeError("the job's command must be built by orchestrator.shell")
    exports = " ".join(f"{k}={quote(v)}" for k, v in JOB_ENV.items())
    lines = [
        'echo $$ > "$D/pid"',
        *wait,
        f'cd "$(cd {remote(host.remote_dir, CODE_DIR)} && pwd -P)" 2>> "$D/log.txt" || '
        f"{{ {write_exit_code('1')}; exit 1; }}",
        'pwd -P > "$D/tree"',  # the code tree this run uses: `orch push` keeps it while it runs
        "trap 'true' INT TERM",  # the wrapper outlives SIGINT/SIGTERM to record exit_code
        f'[ -f "$D/{ENV_FILE}" ] && . "$D/{ENV_FILE}"; rm -f "$D/{ENV_FILE}"',
        f'export {exports} ORCH_RUN_DIR="$D"',
        python_setup(host),
        "export ORCH_PYTHON",
        f'( {command}\n) >> "$D/log.txt" 2>&1 < /dev/null',  # a subshell: `exit N` ends it only
        "code=$?",
        f'[ -f "$D/progress.json" ] || {extract_script(chr(34) + "$D/log.txt" + chr(34))} '
        f'> "$D/{PROGRESS_TXT}"',
        *([list_outputs(outputs)] if outputs else []),
        write_exit_code("$code"),
        "exit $code",
    ]
    return [trusted(line) for line in lines]


OUTPUTS_MAX_FILES = 10000
_LIST_OUTPUTS = """import glob, json, os, sys
d, found = sys.argv[1], {}
for pattern in sys.argv[2:]:
    for hit in sorted(glob.glob(os.path.join(d, pattern))):
        one = [(os.path.dirname(hit), [], [os.path.basename(hit)])]
        walk = os.walk(hit) if os.path.isdir(hit) else one
        for top, _, names in walk:
            for name in sorted(names):
                p = os.path.join(top, name)
                if os.path.isfile(p) and not os.path.islink(p) and len(found) < MAX:
                    found[os.path.relpath(p, d)] = os.path.getsize(p)
run = json.load(open(os.path.join(d, "run.json")))
run["outputs"] = [{"path": k, "size": v} for k, v in sorted(found.items())]
tmp = os.path.join(d, ".run.json.tmp")
with open(tmp, "w") as f:
    json.dump(run, f)
os.replace(tmp, os.path.join(d, "run.json"))
""".replace("MAX", str(OUTPUTS_MAX_FILES))


def list_outputs(outputs: tuple[str, ...]) -> Quoted:
    """Shell line adding `outputs: [{path, size}]` (files under the playbook's `outputs:`
    patterns, relative to the run folder) to run.json, atomically; errors go to log.txt."""
    return trusted(
        f'"$ORCH_PYTHON" -c {quote(_LIST_OUTPUTS)} "$D" {join(outputs)} >> "$D/log.txt" 2>&1'
    )


def job_script(
    host: HostConfig,
    run_id: str,
    command: Quoted,
    *,
    wait: tuple[Quoted, ...] = (),
    outputs: tuple[str, ...] = (),
) -> Quoted:
    """What tmux runs: `job_steps` for the run folder of `run_id`."""
    head = [f"D={run_dir(host, run_id)}", f"export ORCH_RUN_ID={quote(run_id)}"]
    return trusted("\n".join(head + job_steps(host, command, wait=wait, outputs=outputs)))


def status_script(host: HostConfig, run_ids: list[str] | None) -> Quoted:
    """A shell script that reports every run's files with a fixed handful of processes.

    `grep -H ''` prints each small file's line prefixed with its path, for all runs at once, and
    `grep -c ''` says which marker files exist; a failed run's log tail is the only per-run
    process. The cost stays flat as runs accumulate on a host. Parsed by `status.parse_status`.
    """
    names = [quote(check_run_id(r)) for r in run_ids] if run_ids is not None else [trusted("*")]

    def each(leaf: str) -> str:
        return " ".join(f"{n}/{leaf}" for n in names)

    return trusted(f"""cd {remote(host.remote_dir, RUNS_DIR)} 2>/dev/null || exit 0
echo "@now $(date +%s)"
tmux ls -F '@alive #{{session_name}}' 2>/dev/null
small="{each("run.json")} {each("progress.json")} {each("exit_code")} {each("waiting")}"
small="$small {each(PROGRESS_TXT)}"
find $small -maxdepth 0 -size -{MAX_STATUS_KB}k -print0 2>/dev/null |
  xargs -0 -r grep -H '' 2>/dev/null
find $small -maxdepth 0 -size +{MAX_STATUS_KB - 1}k 2>/dev/null | sed 's/^/@big /'
grep -c '' {each("results.json")} {each("cancelled")} {each("skipped")} 2>/dev/null |
  sed 's/^/@has /'
stat -c '@ended %n %Y' {each("exit_code")} 2>/dev/null
for f in {each("log.txt")}; do
  d=${{f%/log.txt}}
  [ -f "$f" ] && [ ! -f "$d/exit_code" ] && [ ! -f "$d/progress.json" ] &&
    {{ {extract_script('"$f"')} | sed "s|^|@prog $d |"; }}
done
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
