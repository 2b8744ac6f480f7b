"""Slurm faults (issue 17): the controller down while a job runs (unknown, never lost; no second
job into the same run folder), secrets left on the login node, a refused submission's record.
Against the real single-node cluster of tests/slurm_cluster.py, reached over SSH."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import add_fake_job
from tests.slurm_cluster import node_resources, slurm_cluster, slurm_login  # noqa: F401
from tests.test_shards import worker_project


@pytest.fixture
def hpc(project, slurm_login, isolated_home, tmp_path):  # noqa: F811 - fixture by name
    """Host `hpc` (backend: slurm) with a secret in `env:`, and the fake job playbook."""
    slurm_login.install_client(isolated_home, "login")
    add_fake_job(project, "{steps: 5, sleep: 0.05, exit: 0, corrupt: false}")
    (project / "orch.yaml").write_text(
        f"hosts:\n  hpc:\n    host: login\n    backend: slurm\n"
        f"    remote_dir: {tmp_path / 'remote'}\n    python: {sys.executable}\n    timeout: 30\n"
        f"    env: {{SECRET_TOKEN: s3cr3t-canary}}\n"
        f"    slurm: {{partition: debug, time: '00:10:00', mem: 100M}}\n"
    )
    return tmp_path / "remote" / "runs"


def status(orch, run_id: str):
    res = orch("status", "--json", run_id)
    return res.exit_code, {s["run_id"]: s for s in json.loads(res.stdout or "[]")}


def wait_state(orch, run_id: str, states: tuple[str, ...], limit: float = 60) -> dict:
    deadline = time.monotonic() + limit
    while True:
        code, seen = status(orch, run_id)
        if code == 0 and seen[run_id]["state"] in states:
            return seen[run_id]
        assert time.monotonic() < deadline, seen
        time.sleep(0.3)


@pytest.fixture
def hpc_worker(tmp_path, slurm_login, isolated_home, tiny_model, monkeypatch):  # noqa: F811
    """The worker project (tiny model, sample data) with host `hpc` (backend: slurm)."""
    slurm_login.install_client(isolated_home, "login")
    root = worker_project(
        tmp_path / "proj",
        tiny_model,
        f"hosts:\n  hpc:\n    host: login\n    backend: slurm\n"
        f"    remote_dir: {tmp_path / 'remote'}\n    python: {sys.executable}\n"
        f"    timeout: 30\n    slurm: {{partition: debug, time: '00:20:00'}}\n",
    )
    monkeypatch.chdir(root)
    return tmp_path / "remote" / "runs"


def test_controller_down_is_unknown_never_lost_and_resume_refused(
    hpc_worker,
    orch,
    slurm_cluster,  # noqa: F811
):
    # long enough (40 lines x 2 methods, one at a time) to outlive the controller's restart
    sets = ["data.n_samples=40", "generation.batch_size=1", "generation.max_new_tokens=96"]
    res = orch("run", "shardtest", "--host", "hpc", *(x for s in sets for x in ("--set", s)))
    assert res.exit_code == 0, res.output
    run_id = res.stdout.split("started ")[1].split()[0]
    wait_state(orch, run_id, ("running",))
    job = json.loads((hpc_worker / run_id / "run.json").read_text())["slurm_job"]
    slurm_cluster.stop_controller()
    try:
        code, seen = status(orch, run_id)
        assert code == 3, seen
        assert seen[run_id]["state"] == "running" and not seen[run_id]["reachable"], seen
        assert "Slurm did not answer" in seen[run_id]["note"]
        res = orch("run", "--resume", run_id)
        assert res.exit_code == 3 and "Slurm did not answer" in res.stderr, res.output
        assert "not resuming" in res.stderr
    finally:
        slurm_cluster.start_controller()
    assert wait_state(orch, run_id, ("running", "lost", "succeeded"))["state"] == "running"
    res = orch("run", "--resume", run_id)  # the scheduler says the first job still runs
    assert res.exit_code == 1 and "still queued or running" in res.stderr, res.output
    assert orch("cancel", run_id).exit_code == 0
    assert wait_state(orch, run_id, ("cancelled",))["state"] == "cancelled"
    assert json.loads((hpc_worker / run_id / "run.json").read_text())["slurm_job"] == job


def secrets_left(remote: Path) -> list[str]:
    """Every file under the login node's remote_dir that holds the secret."""
    return [str(p) for p in remote.rglob("*") if p.is_file() and b"s3cr3t" in p.read_bytes()]


def test_refused_submit_leaves_no_secret_and_a_failed_record(hpc, orch, project):
    (project / "playbooks" / "nowhere.yaml").write_text(
        (project / "playbooks" / "job.yaml").read_text() + "slurm: {partition: nosuch}\n"
    )
    res = orch("run", "nowhere", "--host", "hpc")
    assert res.exit_code == 1 and "sbatch refused the job" in res.stderr, res.output
    assert secrets_left(hpc.parent) == []
    [path] = (project / ".orch" / "runs").glob("nowhere-*.json")
    record = json.loads(path.read_text())
    assert record["state"] == "failed" and "sbatch refused" in record["error"], record
    shown = orch("status", "--json")
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.stdout)
    assert row["state"] == "failed" and "sbatch refused" in row["note"]
    assert orch("fetch").exit_code == 0  # never started: nothing to fetch, nothing breaks
    named = orch("fetch", record["run_id"])
    assert named.exit_code == 1 and "sbatch refused" in named.output


def test_cancelled_pending_job_leaves_no_secret(hpc, orch, project):
    cpus = node_resources()[1]
    add_fake_job(
        project,
        "{steps: 600, sleep: 0.1}",
        name="wide",
        extra=f"slurm: {{cpus_per_task: {cpus}}}\n",
    )
    first = orch("run", "wide", "--host", "hpc")
    assert first.exit_code == 0, first.output
    first_id = first.stdout.split("started ")[1].split()[0]
    wait_state(orch, first_id, ("running",))
    second = orch("run", "wide", "--host", "hpc")
    second_id = second.stdout.split("started ")[1].split()[0]
    assert wait_state(orch, second_id, ("queued",))["state"] == "queued"
    assert (hpc / second_id / "env").exists()  # waiting for its job to read it
    assert orch("cancel", second_id).exit_code == 0
    assert orch("cancel", first_id).exit_code == 0
    assert secrets_left(hpc.parent) == []
