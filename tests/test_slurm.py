"""orch against a real single-node Slurm cluster, reached over SSH through its login node:
submit, poll through PENDING/RUNNING to COMPLETED, a failing job, cancel, logs and fetch."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import add_fake_job, orch_cmd, start_run
from tests.slurm_cluster import node_resources, slurm_cluster, slurm_login  # noqa: F401
from tests.test_shards import assert_same_results, single_host_run, wait_all, worker_project

HERE = Path(__file__).parent


@pytest.fixture
def cluster(project, slurm_login, isolated_home, tmp_path):  # noqa: F811 - fixture by name
    """Project with a fake job playbook and host `cluster` (backend: slurm) via alias `login`."""
    slurm_login.install_client(isolated_home, "login")
    add_fake_job(project, "{steps: 5, sleep: 0.05, exit: 0, corrupt: false, fail_shard: -1}")
    cpus = node_resources()[1]
    add_fake_job(
        project,
        "{steps: 40, sleep: 0.1, exit: 0, corrupt: false}",
        name="wide",
        extra=f"slurm: {{cpus_per_task: {cpus}}}\n",
    )
    (project / "orch.yaml").write_text(
        f"hosts:\n  cluster:\n    host: login\n    backend: slurm\n"
        f"    remote_dir: {tmp_path / 'remote'}\n    python: {sys.executable}\n    timeout: 10\n"
        f"    slurm: {{partition: debug, time: '00:10:00', mem: 100M}}\n"
    )
    return "cluster"


def start(orch, playbook, *sets):
    return start_run(orch, "cluster", *sets, playbook=playbook)


def status(orch, *run_ids):
    res = orch("status", "--json", *run_ids)
    assert res.exit_code == 0, res.output
    return {s["run_id"]: s for s in json.loads(res.stdout)}


def watch(orch, run_id, until=("succeeded", "failed", "cancelled", "lost"), limit=90):
    """Poll until the run reaches one of `until`; return every (state, note) seen, in order."""
    seen, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline:
        s = status(orch, run_id)[run_id]
        if not seen or seen[-1] != (s["state"], s["note"]):
            seen.append((s["state"], s["note"]))
        if s["state"] in until:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"{run_id}: still {seen[-1]} after {limit}s")


def test_submit_poll_queued_running_completed_then_fetch(cluster, orch, project):
    first = start(orch, "wide")  # takes every CPU of the node
    watch(orch, first, until=("running",))
    second = start(orch, "wide", "job.steps=3")  # must wait for the first: PENDING (Resources)
    assert status(orch, second)[second]["state"] == "queued"
    deadline = time.monotonic() + 20  # the reason appears after the scheduler's next pass
    while (seen := status(orch, second)[second])["note"] != "Slurm: PENDING (Resources)":
        assert seen["state"] == "queued" and time.monotonic() < deadline, seen
        time.sleep(0.3)

    states = [s for s, _ in watch(orch, second)]
    assert states[0] == "queued" and states[-1] == "succeeded", states
    assert "running" in states or states == ["queued", "succeeded"]
    assert [s for s, _ in watch(orch, first)][-1] == "succeeded"

    res = orch("fetch", second)
    assert res.exit_code == 0, res.output
    dest = project / "results" / second
    assert json.loads((dest / "results.json").read_text())["baseline"]["n"] == 3
    assert json.loads((dest / "run.json").read_text())["slurm_job"].isdigit()
    logs = orch("logs", second)
    assert logs.exit_code == 0 and "step 2" in logs.stdout and "done" in logs.stdout


def test_failing_job_shows_failed_with_exit_code_and_log(cluster, orch):
    run_id = start(orch, "job", "job.exit=3")
    assert watch(orch, run_id)[-1][0] == "failed"
    s = status(orch, run_id)[run_id]
    assert s["exit_code"] == 3 and "done" in s["log_tail"]
    res = orch("status", run_id)
    assert "failed" in res.stdout and "exit code 3" in res.stdout


def test_cancel_shows_cancelled(cluster, orch):
    run_id = start(orch, "job", "job.steps=600", "job.sleep=0.1")
    watch(orch, run_id, until=("running",))
    res = orch("cancel", run_id)
    assert res.exit_code == 0 and res.stdout.strip() == f"{run_id}: cancelled", res.output
    assert watch(orch, run_id)[-1][0] == "cancelled"
    assert orch("cancel", run_id).stdout.strip() == f"{run_id}: finished"


def test_sbatch_refusal_is_one_line_error_and_leaves_a_failed_record(cluster, orch, project):
    res = orch("run", "job", "--host", "cluster", "--set", "job.steps=1")
    assert res.exit_code == 0
    text = (project / "orch.yaml").read_text().replace("partition: debug", "partition: nosuch")
    (project / "orch.yaml").write_text(text)
    before = sorted((project / ".orch" / "runs").glob("*.json"))
    res = orch("run", "job", "--host", "cluster")
    assert res.exit_code == 1
    assert "sbatch refused the job" in res.stderr and "partition" in res.stderr.lower()
    [new] = sorted(set((project / ".orch" / "runs").glob("*.json")) - set(before))
    assert json.loads(new.read_text())["state"] == "failed"  # recorded, never started


def test_job_array_failing_task_shows_failed_with_its_exit_code(cluster, orch):
    res = orch("run", "job", "--host", "cluster", "--shards", "3", "--set", "job.fail_shard=1")
    assert res.exit_code == 0, res.output
    parent = res.stdout.split("started ")[1].split(":")[0]
    seen = {s["run_id"]: s for s in wait_all(orch, [parent], limit=120)}
    assert {rid: s["state"] for rid, s in seen.items()} == {
        f"{parent}-s0": "succeeded",
        f"{parent}-s1": "failed",
        f"{parent}-s2": "succeeded",
    }
    assert seen[f"{parent}-s1"]["exit_code"] == 3
    assert [seen[f"{parent}-s{i}"]["shard"] for i in range(3)] == [0, 1, 2]
    assert {s["parent"] for s in seen.values()} == {parent}
    text = orch("status", parent).stdout
    assert f"{parent}: failed" in text and "(1 failed, 2 succeeded)" in text
    records = json.loads((Path(".orch/runs") / f"{parent}-s1.json").read_text())
    assert records["job_id"].endswith("_1") and records["backend"] == "slurm"


@pytest.fixture
def cluster_worker(tmp_path, slurm_login, isolated_home, tiny_model, monkeypatch):  # noqa: F811
    """The worker project with host `cluster` (backend: slurm) and `local`."""
    slurm_login.install_client(isolated_home, "login")
    root = worker_project(
        tmp_path / "proj",
        tiny_model,
        f"hosts:\n  cluster:\n    host: login\n    backend: slurm\n"
        f"    remote_dir: {tmp_path / 'remote'}\n    python: {sys.executable}\n"
        f"    timeout: 10\n    slurm: {{partition: debug, time: '00:20:00'}}\n"
        f"  local: {{python: {sys.executable}}}\n",
    )
    monkeypatch.chdir(root)
    return root


def test_job_array_merges_to_the_single_host_result(cluster_worker, orch):
    res = orch("run", "shardtest", "--host", "cluster", "--shards", "2")
    assert res.exit_code == 0, res.output
    parent = res.stdout.split("started ")[1].split(":")[0]
    single = single_host_run(orch, cluster_worker)
    states = {s["run_id"]: s["state"] for s in wait_all(orch, [parent])}
    assert states == {f"{parent}-s0": "succeeded", f"{parent}-s1": "succeeded"}
    res = orch("fetch", parent)
    assert res.exit_code == 0 and f"{parent}: merged (succeeded)" in res.stdout, res.output
    merged = json.loads((cluster_worker / "results" / parent / "results.json").read_text())
    assert_same_results(merged, single)
    for name, doc in (("merged", merged), ("single", single)):
        print(name, json.dumps({k: v for k, v in doc["beam_2"].items() if k != "settings"}))
        print(name, json.dumps(doc["run"]["data"]), doc["run"]["playbook_sha256"])


def test_doctor_checks_the_slurm_tools_accounting_and_partition(cluster, orch, project):
    res = orch("doctor", "--host", "cluster", "--json")
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    for tool in ("sbatch", "squeue", "scancel", "scontrol"):
        assert checks[tool]["status"] == "ok", checks[tool]
    assert checks["sacct"]["status"] == "warn" and "scontrol" in checks["sacct"]["detail"]
    assert checks["partition"]["status"] == "ok"
    assert checks["partition"]["detail"].startswith("debug up, 1 node(s)")
    assert "tmux" not in checks
    text = (project / "orch.yaml").read_text().replace("partition: debug", "partition: nosuch")
    (project / "orch.yaml").write_text(text)
    res = orch("doctor", "--host", "cluster", "--json")
    assert res.exit_code == 1
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert checks["partition"]["status"] == "fail" and "nosuch" in checks["partition"]["detail"]


def test_logs_follow_ends_when_the_job_ends(cluster, orch):
    run_id = start(orch, "job", "job.steps=20", "job.sleep=0.1")
    res = subprocess.run(
        orch_cmd("logs", "-f", run_id),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "step 19" in res.stdout and res.stdout.rstrip().endswith("done")


def test_stopped_job_resumes_from_its_predictions(cluster_worker, orch):
    """A job stopped midway (as by preemption or a time limit) continues where it stopped."""
    sets = ["--set", "generation.batch_size=1", "--set", "data.n_samples=4"]
    res = orch("run", "shardtest", "--host", "cluster", *sets)
    assert res.exit_code == 0, res.output
    run_id = res.stdout.split("started ")[1].split()[0]
    deadline = time.monotonic() + 120
    while (status(orch, run_id)[run_id]["done"] or 0) < 2:
        assert time.monotonic() < deadline, status(orch, run_id)
        time.sleep(0.3)
    assert orch("cancel", run_id).exit_code == 0
    assert watch(orch, run_id)[-1][0] == "cancelled"

    res = orch("run", "--resume", run_id)
    assert res.exit_code == 0 and f"resumed {run_id} on cluster" in res.stdout, res.output
    assert watch(orch, run_id, limit=180)[-1][0] == "succeeded"
    assert orch("fetch", run_id).exit_code == 0
    dest = cluster_worker / "results" / run_id
    log = (dest / "log.txt").read_text()
    attempts = [
        sum(int(x.split(": ")[1].split()[0]) for x in part.splitlines() if "to decode" in x)
        for part in log.split("loading ")[1:]
    ]
    assert len(attempts) == 2 and attempts[1] < 8, log  # the second skipped what was done
    lines = [json.loads(x) for x in (dest / "predictions.jsonl").read_text().splitlines()]
    assert len({(x["index"], x["method"]) for x in lines}) == len(lines) == 8
    results = json.loads((dest / "results.json").read_text())
    assert results["greedy"]["n"] == results["beam_2"]["n"] == 4


def test_cancel_parent_cancels_every_array_task_running_or_pending(cluster, orch):
    # each task takes every CPU of the node: task 1 waits while task 0 runs
    res = orch("run", "wide", "--host", "cluster", "--shards", "2", "--set", "job.steps=600")
    assert res.exit_code == 0, res.output
    parent = res.stdout.split("started ")[1].split(":")[0]
    deadline = time.monotonic() + 60
    while True:
        states = sorted(s["state"] for s in status(orch, parent).values())
        if states == ["queued", "running"]:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.3)
    res = orch("cancel", parent)
    assert res.exit_code == 0
    assert res.stdout.splitlines() == [f"{parent}-s0: cancelled", f"{parent}-s1: cancelled"]
    seen = wait_all(orch, [parent], limit=60)
    assert {s["state"] for s in seen} == {"cancelled"}
