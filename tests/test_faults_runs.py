"""Faults around a run's life on an SSH host (issue 17): a host known only from ~/.ssh/config
(relative default remote_dir), pushes while runs use their code tree, a full local disk at launch
and at fetch, bad run records, an absurd `timeout:`. Real sshd, tmux and tmpfs mounts."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import add_fake_job, kill_tmux, poll, start_run
from tests.sshd_server import SSHServer

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespace, tmpfs)")
JOB = "{steps: 3, sleep: 0.05, exit: 0, corrupt: false, hold: false}"


def status_of(orch, run_id: str) -> dict:
    res = orch("status", "--json", run_id)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)[0]


@pytest.fixture
def lone(project, tmp_path, isolated_home):
    """Host `lone`: only in ~/.ssh/config, no orch.yaml entry; its sshd's sessions see a fresh
    empty folder as the user's home (a private mount namespace), so the default relative
    `remote_dir` (`orch`) lands there."""
    home = tmp_path / "remote-home"
    home.mkdir()
    server = SSHServer(tmp_path / "lone-sshd", home=home).start()
    server.install_client(isolated_home, "lone")
    add_fake_job(project, JOB)
    (project / "playbooks" / "hi.yaml").write_text('command: "echo hi"\n')
    (project / "playbooks" / "hijob.yaml").write_text(
        'command: "echo hi; {python} gpu_worker/fake_job.py --playbook {playbook} --out {out}"\n'
        f"job: {JOB}\n"
    )
    yield home
    kill_tmux(server)
    server.stop()


@ROOT_ONLY
def test_host_only_in_ssh_config_runs_end_to_end(lone, orch, project):
    assert "lone" not in (project / "orch.yaml").read_text()
    plain = start_run(orch, "lone", playbook="hi")
    ended = poll(lambda: (s := status_of(orch, plain))["state"] != "running" and s, 30)
    assert ended["state"] != "lost" and ended["exit_code"] == 0, ended
    assert orch("logs", plain).stdout.strip() == "hi"

    run_id = start_run(orch, "lone", playbook="hijob")
    done = poll(lambda: (s := status_of(orch, run_id))["state"] != "running" and s, 30)
    assert done["state"] == "succeeded", done
    assert orch("logs", run_id, "-n", "2").stdout.splitlines() == ["step 2", "done"]
    fetched = orch("fetch", run_id)
    assert fetched.exit_code == 0 and f"{run_id}: fetched (succeeded)" in fetched.stdout
    got = json.loads((project / "results" / run_id / "results.json").read_text())
    assert got["baseline"]["cer"] == 0.42
    record = json.loads((project / ".orch" / "runs" / f"{run_id}.json").read_text())
    assert record["remote_dir"] == pwd.getpwuid(os.getuid()).pw_dir + "/orch"  # absolute
    assert (lone / "orch" / "runs" / run_id / "log.txt").read_text().startswith("hi\n")
    assert not (project / "orch").exists()  # nothing was written relative to anything else


def test_second_worker_refuses_a_run_folder_a_live_worker_holds(tmp_path, tiny_model):
    from tests.conftest import REPO
    from tests.test_worker import playbook, predictions

    book = playbook(tmp_path, tiny_model, {"greedy": {"kind": "greedy"}}, n=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gpu_worker", "run", str(book), "--out", str(out)]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    poll(lambda: (out / "predictions.jsonl").is_file(), 120)
    second = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True)
    assert second.returncode == 75, second.stderr
    assert second.stderr.strip().splitlines() == [
        f"gpu_worker: error: {out}: another worker (pid {first.pid}) is writing to this run "
        "folder; not starting"
    ]
    assert first.wait(120) == 0, first.stderr.read()
    lines = [(x["index"], x["method"]) for x in predictions(out)]
    assert len(lines) == len(set(lines)) == 4  # nothing written twice
    free = subprocess.run(["flock", "-n", str(out / ".lock"), "true"])
    assert free.returncode == 0  # the lock ended with its worker


@pytest.fixture
def gpuproj(project, box, tmp_path, sshd):
    """The test project, the fake job playbook and host `gpu` (the loopback sshd)."""
    add_fake_job(
        project, "{steps: 3, sleep: 0.05, exit: 0, corrupt: false, big_mb: 0, hold: false}"
    )
    (project / "orch.yaml").write_text(
        f"hosts:\n  gpu: {{host: box, remote_dir: {tmp_path / 'remote'}, python: {sys.executable},"
        " timeout: 5}\n"
    )
    yield project
    kill_tmux(sshd)


@pytest.fixture
def full_disk():
    """full(path, size) mounts a tmpfs of `size` at `path` and fills it; unmounted after."""
    made: list[Path] = []

    def full(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True
        )
        made.append(path)
        subprocess.run(["dd", "if=/dev/zero", f"of={path}/fill", "bs=4k"], capture_output=True)
        return path

    yield full
    for m in reversed(made):
        subprocess.run(["umount", "-l", str(m)], check=False)


def tmux_sessions(server) -> str:
    env = {"TMUX_TMPDIR": str(server.tmux_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["tmux", "ls"], env=env, capture_output=True, text=True).stdout


@ROOT_ONLY
def test_full_local_disk_at_launch_starts_nothing(gpuproj, orch, tmp_path, full_disk, sshd):
    runs = full_disk(gpuproj / ".orch" / "runs", "64k")
    res = orch("run", "job", "--host", "gpu")
    assert res.exit_code == 1, res.output
    [line] = res.stderr.strip().splitlines()
    assert "cannot write the run record" in line and str(runs) in line
    assert "No space left on device" in line and "nothing was started on gpu" in line
    assert "orch-job" not in tmux_sessions(sshd)
    assert not list((tmp_path / "remote" / "runs").glob("job-*"))
    (runs / "fill").unlink()  # room again: the same command starts and records the job
    run_id = start_run(orch, "gpu")
    assert (runs / f"{run_id}.json").is_file()


@ROOT_ONLY
def test_full_local_disk_at_fetch_is_a_local_error(gpuproj, orch, full_disk):
    run_id = start_run(orch, "gpu", "job.big_mb=2")
    poll(lambda: status_of(orch, run_id)["state"] == "succeeded", 30)
    results = full_disk(gpuproj / "results", "8m")
    res = orch("fetch", run_id)
    assert res.exit_code == 1, res.output
    assert "No space left on device" in res.output and str(results) in res.output
    assert "unreachable" not in res.output
    assert sorted(p.name for p in results.iterdir()) == ["fill"]  # no half-written folder
    (results / "fill").unlink()
    again = orch("fetch", run_id)
    assert again.exit_code == 0, again.output
    assert (results / run_id / "results.json").is_file()


def test_push_never_prunes_the_tree_a_live_run_uses(gpuproj, orch, tmp_path):
    remote = tmp_path / "remote"
    run_id = start_run(orch, "gpu", "job.hold=true")
    folder = remote / "runs" / run_id
    poll(lambda: (folder / "progress.json").is_file(), 30)
    tree = Path((folder / "tree").read_text().strip())
    assert tree.parent == remote / ".trees" and tree.is_dir()
    for i in range(4):  # more pushes than trees kept
        (gpuproj / "gpu_worker" / "engine.py").write_text(f"VALUE = {i + 10}\n")
        assert orch("push", "--host", "gpu").exit_code == 0
    assert (tree / "gpu_worker" / "fake_job.py").is_file()  # the run's code is all still there
    assert len(list((remote / ".trees").glob("[!.]*"))) == 4  # 3 kept + the one in use
    (folder / "release").touch()
    assert poll(lambda: status_of(orch, run_id)["state"] in ("succeeded", "failed"), 30)
    assert status_of(orch, run_id)["state"] == "succeeded"
    (gpuproj / "gpu_worker" / "engine.py").write_text("VALUE = 99\n")
    assert orch("push", "--host", "gpu").exit_code == 0
    assert not tree.exists()  # pruned once its run ended
