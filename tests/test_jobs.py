"""Jobs end to end against the real sshd and real tmux (and the local host): run, status,
logs, cancel, fetch, and what happens when things go wrong."""

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import add_fake_job, kill_tmux, orch_cmd, worker_checkout
from tests.helpers import start_run as start
from tests.needs import requires_tesseract
from tests.sshd_server import SSHServer

HERE = Path(__file__).parent


@pytest.fixture
def jobs_project(project, box, tmp_path, sshd):
    """The test project with a fake job playbook and two hosts: `gpu` (ssh) and `local`."""
    add_fake_job(project, "{steps: 5, sleep: 0.05, exit: 0, corrupt: false, hold: false}")
    (project / "orch.yaml").write_text(
        f"hosts:\n"
        f"  gpu: {{host: box, remote_dir: {tmp_path / 'remote'}, python: {sys.executable},"
        f" timeout: 5, hourly_rate: 3.6}}\n"
        f"  local: {{python: {sys.executable}}}\n"
    )
    yield project
    kill_tmux(sshd)


def status(orch, *args):
    res = orch("status", "--json", *args)
    assert res.exit_code == 0, res.output
    return {s["run_id"]: s for s in json.loads(res.stdout)}


def wait_for(
    orch, run_id, states=("succeeded", "failed", "cancelled", "lost"), limit=30, progress=False
):
    """Poll status until the run is in one of `states` (and, with `progress`, has reported)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        s = status(orch, run_id)[run_id]
        if s["state"] in states and (not progress or s["done"]):
            return s
        time.sleep(0.2)
    raise AssertionError(f"{run_id} still {s['state']}")


@pytest.mark.parametrize("host", ["gpu", "local"])
def test_run_status_logs_fetch(jobs_project, orch, host):
    run_id = start(orch, host, "job.steps=8", "job.sleep=0.1")
    assert run_id.startswith("job-") and len(run_id.split("-")) == 4
    seen = status(orch)[run_id]
    assert seen["state"] == "running" and seen["host"] == host
    final = wait_for(orch, run_id)
    assert final["state"] == "succeeded", final
    assert (final["done"], final["total"], final["method"]) == (8, 8, "baseline")
    if host == "gpu":
        assert final["cost"] == pytest.approx(final["elapsed_s"] / 3600 * 3.6)
    logs = orch("logs", run_id, "-n", "3")
    assert logs.stdout.splitlines() == ["step 6", "step 7", "done"]
    fetched = orch("fetch")
    assert fetched.exit_code == 0 and f"{run_id}: fetched (succeeded)" in fetched.stdout
    out = jobs_project / "results" / run_id
    assert sorted(p.name for p in out.iterdir()) == [
        "exit_code",
        "log.txt",
        "orch-run.json",
        "playbook.yaml",
        "predictions.jsonl",
        "results.json",
        "run.json",
    ]
    assert json.loads((out / "results.json").read_text())["baseline"]["cer"] == 0.42
    assert "steps: 8" in (out / "playbook.yaml").read_text()
    assert orch("fetch").stdout.strip() == "nothing to fetch"
    assert "already fetched" in orch("fetch", run_id).stdout


def test_run_follow_exits_with_job_status(jobs_project, orch):
    ok = orch("run", "job", "--host", "gpu", "--follow", "--set", "job.steps=3")
    assert ok.exit_code == 0, ok.output
    assert "step 0\nstep 1\nstep 2\ndone\n" in ok.stdout
    bad = orch("run", "job", "--host", "gpu", "--follow", "--set", "job.exit=3")
    assert bad.exit_code == 1
    assert "failed" in bad.stdout and "exit code 3" in bad.stdout


def test_failed_job_shows_log_tail(jobs_project, orch):
    run_id = start(orch, "gpu", "job.exit=3")
    assert wait_for(orch, run_id)["state"] == "failed"
    text = orch("status", run_id).stdout
    assert "last lines of" in text and "step 4" in text and "exit code 3" in text
    fetched = orch("fetch", run_id)
    assert f"{run_id}: fetched (failed)" in fetched.stdout and "  done" in fetched.stdout
    assert (jobs_project / "results" / run_id / "log.txt").exists()


@pytest.mark.parametrize("host", ["gpu", "local"])
def test_cancel(jobs_project, orch, host):
    run_id = start(orch, host, "job.steps=200", "job.sleep=0.1")
    wait_for(orch, run_id, states=("running",), progress=True)
    res = orch("cancel", run_id, "--grace", "2")
    assert res.exit_code == 0 and res.stdout.strip() == f"{run_id}: cancelled"
    s = status(orch, run_id)[run_id]
    assert s["state"] == "cancelled" and s["done"] < 200
    assert orch("cancel", run_id).stdout.strip() == f"{run_id}: finished"  # nothing left to stop
    time.sleep(0.5)
    assert status(orch, run_id)[run_id]["done"] == s["done"]  # nothing runs any more


def test_tmux_killed_behind_our_back_is_lost(jobs_project, orch, sshd):
    run_id = start(orch, "gpu", "job.steps=200", "job.sleep=0.1")
    wait_for(orch, run_id, states=("running",))
    subprocess.run(
        ["tmux", "kill-session", "-t", f"orch-{run_id}"],
        env={"TMUX_TMPDIR": str(sshd.tmux_dir), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    s = wait_for(orch, run_id)
    assert s["state"] == "lost" and "no tmux session" in s["note"]


def test_client_disconnect_job_finishes_and_is_fetched_later(jobs_project):
    proc = subprocess.Popen(
        orch_cmd(*"run job --host gpu --follow --set job.steps=15 --set job.sleep=0.1".split()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()
    while not line.startswith("started "):
        line = proc.stdout.readline()
    run_id = line.split()[1]
    proc.kill()  # the laptop goes away mid-follow
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = subprocess.run(orch_cmd("fetch", run_id), capture_output=True, text=True)
        if "fetched (succeeded)" in out.stdout:
            break
        time.sleep(0.3)
    assert "fetched (succeeded)" in out.stdout, out.stdout + out.stderr


def test_second_run_on_busy_host_refused(jobs_project, orch):
    first = start(orch, "gpu", "job.steps=100", "job.sleep=0.1")
    res = orch("run", "job", "--host", "gpu")
    assert res.exit_code == 1
    assert f"gpu is busy: orch job {first} is still running" in res.stderr
    second = start(orch, "gpu", "job.steps=1") if False else None
    res = orch("run", "job", "--host", "gpu", "--allow-concurrent", "--set", "job.steps=1")
    assert res.exit_code == 0, res.output
    second = res.stdout.split("started ")[1].split()[0]
    assert wait_for(orch, second)["state"] == "succeeded"
    orch("cancel", first, "--grace", "1")


def test_corrupt_results_fetch_writes_nothing(jobs_project, orch):
    run_id = start(orch, "gpu", "job.corrupt=true")
    wait_for(orch, run_id)
    res = orch("fetch", run_id)
    assert res.exit_code == 1
    assert "results.json on gpu is invalid" in res.stdout and "nothing was written" in res.stdout
    results = jobs_project / "results"
    assert not results.exists() or list(results.iterdir()) == []


def test_two_status_at_once(jobs_project, orch):
    run_id = start(orch, "gpu", "job.steps=20", "job.sleep=0.05")
    cmd = orch_cmd("status", "--json")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=30)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(json.loads(o)[0]["run_id"] == run_id for o in outs)
    record = json.loads((jobs_project / ".orch" / "runs" / f"{run_id}.json").read_text())
    assert record["run_id"] == run_id


def test_status_host_finds_runs_without_local_records(jobs_project, orch):
    run_id = start(orch, "gpu", "job.steps=2")
    shutil.rmtree(jobs_project / ".orch" / "runs")  # another laptop, or .orch/ lost
    assert run_id in status(orch)  # no local state at all: the hosts of orch.yaml are asked
    (jobs_project / ".orch" / "runs" / f"{run_id}.json").unlink()
    assert status(orch) == {}  # local state again: only what it records
    seen = status(orch, "--host", "gpu")
    assert run_id in seen
    wait_for(orch, run_id)
    assert "fetched (succeeded)" in orch("fetch").stdout


def test_unreachable_host_shown_others_still_show(jobs_project, orch, tmp_path, isolated_home):
    run_id = start(orch, "gpu", "job.steps=2")
    dead = SSHServer(tmp_path / "dead").start()
    dead.install_client(isolated_home, "deadbox")
    cfg = jobs_project / "orch.yaml"
    cfg.write_text(
        cfg.read_text()
        + f"  dead: {{host: deadbox, remote_dir: {tmp_path / 'r2'}, python: {sys.executable},"
        " timeout: 3}\n"
    )
    dead_id = start(orch, "dead", "job.steps=100", "job.sleep=0.1")
    dead.stop()
    res = orch("status", "--json")
    assert res.exit_code == 3 and "dead: unreachable (deadbox)" in res.stderr
    seen = {s["run_id"]: s for s in json.loads(res.stdout)}
    assert seen[dead_id]["reachable"] is False and seen[dead_id]["state"] == "running"
    assert seen[run_id]["reachable"] is True
    table = orch("status")
    assert table.exit_code == 3 and "unreachable (last: running)" in table.stdout


def test_logs_follow_survives_reconnect(jobs_project, sshd, tmp_path):
    """The link is cut while `logs -f` streams a job that is held before its last line, then
    the job is released: the follower reconnects and prints every line exactly once."""
    run = subprocess.run(
        orch_cmd("run", "job", "--host", "gpu", "--set", "job.steps=40", "--set", "job.hold=true"),
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = run.stdout.split("started ")[1].split()[0]
    proc = subprocess.Popen(
        orch_cmd("logs", run_id, "-f", "-n", "1000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)  # a limit only: a hung follower fails the test
    watchdog.start()
    try:
        lines = []
        while "step 39" not in lines:  # every step is streamed: the job now waits, held
            line = proc.stdout.readline()
            assert line, f"follower ended early: {proc.wait()} {proc.stderr.read()}"
            lines.append(line.rstrip("\n"))
        sshd.drop_connections()
        (tmp_path / "remote" / "runs" / run_id / "release").touch()
        rest, err = proc.communicate()
    finally:
        watchdog.cancel()
    assert proc.returncode == 0, err
    assert "reconnecting" in err
    assert lines + rest.splitlines() == [f"step {i}" for i in range(40)] + ["done"]


def test_unknown_set_key_is_a_usage_error(jobs_project, orch):
    res = orch("run", "job", "--host", "gpu", "--set", "job.stpes=3")
    assert res.exit_code == 2
    assert "--set job.stpes: job.yaml has no key 'job.stpes' (did you mean 'steps'?)" in res.stderr
    res = orch("run", "nope", "--host", "gpu")
    assert res.exit_code == 2 and "playbook 'nope' not found; known: demo, job" in res.stderr


@pytest.fixture
def demo_project(tmp_path, box, sshd, monkeypatch):
    """A copy of this repository's worker, playbooks and sample data, with host `gpu`."""
    yield from worker_checkout(tmp_path / "demo", tmp_path, sshd, monkeypatch)


@requires_tesseract
def test_real_worker_demo_over_ssh_then_fetch(demo_project, tiny_model):
    """The whole loop with the real worker: run the demo playbook on the sshd host, fetch."""
    res = subprocess.run(
        orch_cmd(
            *"run demo --host gpu --follow --set data.n_samples=4".split(),
            "--set",
            f"model.tiny={tiny_model}",
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "tesseract: CER" in res.stdout and "succeeded" in res.stdout
    run_id = res.stdout.split("started ")[1].split()[0]
    fetched = subprocess.run(orch_cmd("fetch"), capture_output=True, text=True)
    assert f"{run_id}: fetched (succeeded)" in fetched.stdout, fetched.stdout + fetched.stderr
    results = json.loads((demo_project / "results" / run_id / "results.json").read_text())
    assert list(results) == ["baseline", "beam_search", "ensemble", "combined", "tesseract", "run"]
    assert all(results[m]["n"] == 4 for m in results if m != "run")
    # Tesseract's results have the same shape as the model's methods, and so do its predictions
    assert len({tuple(sorted(results[m])) for m in results if m != "run"}) == 1
    lines = (demo_project / "results" / run_id / "predictions.jsonl").read_text().splitlines()
    assert len({tuple(sorted(json.loads(x))) for x in lines}) == 1 and len(lines) == 5 * 4
    assert results["run"]["run_id"] == run_id
    assert (
        results["run"]["code"]["commit"]
        == subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )


def test_worker_playbook_is_validated_before_anything_is_pushed(demo_project, orch, tmp_path):
    res = orch("run", "demo", "--host", "gpu", "--set", "methods.beam_search.kind=beams")
    assert res.exit_code == 2
    assert "demo.yaml: methods.beam_search.kind: unknown 'beams' (did you mean 'beam'?)" in (
        res.stderr
    )
    res = orch("run", "demo", "--host", "gpu", "--set", "generation.batch_size=abc")
    assert res.exit_code == 2
    assert "generation.batch_size: expected a positive integer, got 'abc'" in res.stderr
    assert not (tmp_path / "remote").exists()  # nothing was pushed
