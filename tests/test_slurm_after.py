"""The one launch sequence on the real single-node Slurm cluster: `orch run --after RUN` becomes a
job with `--dependency=afterok:<job>`, shows `queued (after RUN)` while it waits, runs once that
job succeeds, and is `skipped` (Slurm drops it) when that job fails; a job array gets the launch
pre-check like any run."""

import json
import shutil
import sys
import time

import pytest

from tests.conftest import REPO, git
from tests.helpers import add_fake_job, poll, start_run
from tests.slurm_cluster import slurm_cluster, slurm_login  # noqa: F401


@pytest.fixture
def cluster(project, slurm_login, isolated_home, tmp_path):  # noqa: F811 - fixture by name
    """Host `cluster` (backend: slurm) with a fake job that succeeds (`ok`) and one that fails."""
    slurm_login.install_client(isolated_home, "login")
    add_fake_job(project, "{steps: 3, sleep: 0.05, exit: 0, corrupt: false}", name="ok")
    add_fake_job(project, "{steps: 15, sleep: 0.1, exit: 3, corrupt: false}", name="fails")
    (project / "orch.yaml").write_text(
        f"hosts:\n  cluster:\n    host: login\n    backend: slurm\n"
        f"    remote_dir: {tmp_path / 'remote'}\n    python: {sys.executable}\n    timeout: 10\n"
        f"    slurm: {{partition: debug, time: '00:10:00', mem: 100M}}\n"
    )
    return "cluster"


def status(orch, run_id):
    res = orch("status", "--json", run_id)
    assert res.exit_code == 0, res.output
    return {s["run_id"]: s for s in json.loads(res.stdout)}[run_id]


def reaches(orch, run_id, states, limit=90.0):
    def check():
        s = status(orch, run_id)
        return s if s["state"] in states else None

    check.__doc__ = f"{run_id} reaches {states}"
    return poll(check, limit, every=0.5)


def test_after_a_failed_job_is_skipped_and_after_a_good_one_runs(cluster, orch):
    first = start_run(orch, "cluster", playbook="fails")
    second = start_run(orch, "cluster", playbook="ok")
    res = orch("run", "ok", "--host", "cluster", "--after", first)
    assert res.exit_code == 0, res.output
    waiting = res.stdout.split("started ")[1].split()[0]
    s = status(orch, waiting)
    assert s["state"] == "queued" and s["note"].startswith(f"after {first}; Slurm: PENDING")
    assert f"queued (after {first})" in orch("status", waiting).stdout
    assert reaches(orch, first, ("failed",))["exit_code"] == 3
    s = reaches(orch, waiting, ("skipped",))
    assert s["note"] == f"not started: run {first} did not succeed"
    started = time.monotonic()
    assert orch("logs", waiting, "-f").exit_code == 0  # ends: the job left Slurm's queue
    assert time.monotonic() - started < 30
    assert reaches(orch, second, ("succeeded",))
    res = orch("run", "ok", "--host", "cluster", "--after", second)
    assert res.exit_code == 0, res.output
    after_good = res.stdout.split("started ")[1].split()[0]
    assert reaches(orch, after_good, ("succeeded",))["done"] == 3


def test_after_a_run_of_another_backend_or_host_is_refused(cluster, orch):
    local = start_run(orch, "local", playbook="ok")
    res = orch("run", "ok", "--host", "cluster", "--after", local)
    assert res.exit_code == 2
    assert f"--after {local}: it runs on local, not cluster" in res.stderr


def test_job_array_is_prechecked_before_sbatch(
    tmp_path,
    slurm_login,  # noqa: F811 - fixture by name
    isolated_home,
    orch,
    monkeypatch,
):
    """A missing model folder stops `--shards 2` on the login node: exit 2, nothing submitted."""
    slurm_login.install_client(isolated_home, "login")
    root = tmp_path / "proj"
    shutil.copytree(
        REPO / "gpu_worker", root / "gpu_worker", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "playbooks").mkdir()
    (root / "playbooks" / "bad.yaml").write_text(
        "model: {base: ./no-such-model}\ndata: {source: data/sample}\n"
        "methods: {b: {kind: greedy}}\n"
    )
    (root / "orch.yaml").write_text(
        f"hosts:\n  cluster:\n    host: login\n    backend: slurm\n"
        f"    remote_dir: {tmp_path / 'remote'}\n    python: {sys.executable}\n    timeout: 10\n"
    )
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "bad")
    monkeypatch.chdir(root)
    res = orch("run", "bad", "--host", "cluster", "--shards", "2")
    assert res.exit_code == 2, res.output
    assert "model.base: ./no-such-model: no such folder on this host" in res.stderr
    assert "nothing was started" in res.stderr
    assert list((tmp_path / "remote" / "runs").iterdir()) == []  # no run folder, no batch file
    assert not (root / ".orch" / "runs").exists() or not list((root / ".orch" / "runs").iterdir())
