"""The remote scripts as pure functions: golden copies, and the status parser on canned output.

A golden file in tests/golden/ is the exact text a builder returns for a host whose paths need
quoting. After a deliberate change, regenerate them with `ORCH_UPDATE_GOLDEN=1 pytest
tests/test_scripts.py` and review the diff: it is the change the hosts will see.
"""

import os
import subprocess
from pathlib import Path

import pytest

from gpu_worker.contract import spec
from orchestrator import worker
from orchestrator.backends import Launch, Options
from orchestrator.backends.slurm import SlurmBackend, poll_script
from orchestrator.backends.tmux import TmuxBackend, cancel_script
from orchestrator.config import HostConfig
from orchestrator.playbooks import Resolved
from orchestrator.records import RunRecord
from orchestrator.scripts import (
    env_file,
    job_command,
    job_script,
    log_follow_script,
    log_tail_script,
    precheck_script,
    run_dir,
    status_script,
)
from orchestrator.shell import Quoted, trusted
from orchestrator.states import RunState
from orchestrator.status import parse_status, to_status
from orchestrator.transport import LocalHost

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def fixed_worker(monkeypatch):
    """The scripts name the shipped worker's folder by its content hash: fix it here."""
    monkeypatch.setattr(worker, "identity", lambda: worker.WorkerIdentity("0.0", "ab" * 32))


HOST = HostConfig("gpu", "box", remote_dir="~/orch runs;$(x)", python="python3.11")
COMMAND = job_command("{python} -m gpu_worker run {playbook} --out {out}")


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ORCH_UPDATE_GOLDEN"):
        path.write_text(text)
    assert isinstance(text, Quoted)
    assert text == path.read_text(), f"{name} changed; see this file's docstring"


BOOK = {"model": {"base": "m"}, "data": {"source": "d"}, "methods": {"b": {"kind": "greedy"}}}


def launch_of(run_id: str, doc: dict | None = None, **record) -> Launch:
    """A Launch of `doc` (a gpu_worker playbook by default) for run `run_id`."""
    parsed = spec.parse_playbook(doc or BOOK, "p") if doc is None or "command" not in doc else None
    book = Resolved("p", parsed.doc if parsed else doc, parsed)
    return Launch(RunRecord(run_id, "gpu", "p", 1000.0, **record), book)


def builders():
    launch = launch_of("p-1")
    queued = Options(after=RunRecord("t-0", "gpu", "t", 900.0))
    command = launch_of("c-1", {"command": "train.py --out {out}", "outputs": ["checkpoints/"]})
    slurm = LocalHost(HostConfig("hpc", "h", remote_dir="/srv/my runs;x", backend="slurm"))
    return {
        "job_script.golden": job_script(HOST, "p-1", COMMAND),
        "precheck.golden": precheck_script(HOST),
        "launch_tmux.golden": TmuxBackend().submit_script(LocalHost(HOST), [launch], Options()),
        "launch_tmux_after.golden": TmuxBackend().submit_script(LocalHost(HOST), [command], queued),
        "launch_slurm.golden": SlurmBackend().submit_script(
            slurm, [launch_of(f"p-s{i}") for i in (0, 1)], Options(allow_concurrent=True)
        ),
        "status.golden": status_script(HOST, ["p-1", "q-2"]),
        "status_all.golden": status_script(HOST, None),
        "poll_slurm.golden": poll_script(LocalHost(HOST), ["p-1"]),
        "cancel_tmux.golden": cancel_script(run_dir(HOST, "p-1"), "p-1", 2.0),
        "log_tail.golden": log_tail_script(HOST, "p-1", 20),
        "log_follow.golden": log_follow_script(HOST, "p-1", 1234, trusted("$(cat pidfile)")),
    }


@pytest.mark.parametrize("name", sorted(builders()))
def test_remote_script_matches_its_golden_copy(name):
    golden(name, builders()[name])


@pytest.mark.parametrize("name", sorted(builders()))
def test_remote_script_is_valid_shell(name):
    res = subprocess.run(["bash", "-n"], input=builders()[name], text=True, capture_output=True)
    assert res.returncode == 0, res.stderr


def test_job_command_fills_placeholders_with_the_jobs_own_words():
    cmd = job_command("{python} x.py --playbook {playbook} --out {out} '{other}'", resume=True)
    want = """"$ORCH_PYTHON" x.py --playbook "$D"/playbook.yaml --out "$D" '{other}' --resume"""
    assert cmd == want


CANNED = """@now 1000
@alive orch-a-1
@alive orch-c-3
a-1/run.json:{"run_id": "a-1", "playbook": "p", "started_at": 900, "hourly_rate": 3.6}
a-1/progress.json:{"done": 4, "total": 10, "method": "greedy", "eta_s": 6, "updated_at": 990}
b-2/run.json:{"run_id": "b-2", "playbook": "p", "started_at": 800}
b-2/exit_code:3
c-3/run.json:{"run_id": "c-3", "playbook": "q", "started_at": 950}
c-3/progress.json:{"done": 4, "tot
d-4/run.json:{"run_id": "d-4", "playbook": "p", "started_at": 700}
d-4/exit_code:0
e-5/run.json:not json
f-6/run.json:{"run_id": "f-6", "playbook": "p", "started_at": 600}
f-6/exit_code:oops
x-9/progress.json:{"done": 1}
@has a-1/results.json:0
@has d-4/results.json:1
@has e-5/cancelled:1
@ended b-2/exit_code 960
@ended d-4/exit_code 750
@log b-2 step 3
@log b-2 Traceback: boom
"""


def test_status_output_parses_into_runs_and_states():
    dump = parse_status(CANNED, default_now=0.0)
    assert dump.now == 1000.0
    assert sorted(dump.runs) == ["a-1", "b-2", "c-3", "d-4", "e-5", "f-6"]  # x-9: no run.json
    got = {rid: to_status("gpu", rid, seen, dump.now, 1001.0) for rid, seen in dump.runs.items()}
    a = got["a-1"]
    assert (a.state, a.done, a.total, a.method, a.eta_s) == (RunState.RUNNING, 4, 10, "greedy", 6)
    assert (a.elapsed_s, a.updated_age_s, a.error) == (100.0, 10.0, "")
    assert a.cost == pytest.approx(0.1)
    b = got["b-2"]
    assert (b.state, b.exit_code, b.elapsed_s) == (RunState.FAILED, 3, 160.0)
    assert b.log_tail == ["step 3", "Traceback: boom"]
    assert (got["d-4"].state, got["d-4"].elapsed_s) == (RunState.SUCCEEDED, 50.0)
    assert got["e-5"].state == RunState.CANCELLED


def test_unreadable_run_files_are_reported_not_silent():
    dump = parse_status(CANNED, default_now=0.0)
    c = to_status("gpu", "c-3", dump.runs["c-3"], dump.now, 1001.0)
    assert c.state == "running" and c.done is None
    assert c.error.startswith("progress.json: invalid JSON") and c.error in c.note
    e = to_status("gpu", "e-5", dump.runs["e-5"], dump.now, 1001.0)
    assert e.error.startswith("run.json: invalid JSON") and e.playbook == "?"
    f = to_status("gpu", "f-6", dump.runs["f-6"], dump.now, 1001.0)
    assert (f.state, f.exit_code, f.error) == ("failed", -1, "exit_code: 'oops' is not a number")


def test_status_script_runs_against_a_real_folder(tmp_path):
    host = HostConfig("gpu", "box", remote_dir=str(tmp_path / "r d"))
    run = tmp_path / "r d" / "runs" / "a-1"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"playbook": "p", "started_at": 1}')
    (run / "exit_code").write_text("2\n")
    (run / "log.txt").write_text("one\ntwo\n")
    text = subprocess.run(
        ["bash", "-c", status_script(host, None)], capture_output=True, text=True
    ).stdout
    dump = parse_status(text, default_now=0.0)
    seen = dump.runs["a-1"]
    assert (seen.exit, seen.log, seen.info["playbook"]) == (2, ["one", "two"], "p")


def test_env_file_quotes_each_value():
    host = HostConfig("gpu", "box", env={"A": "x y", "B": "$(id)"})
    assert env_file(host) == b"export A='x y'\nexport B='$(id)'\n"
