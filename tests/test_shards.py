"""Sharded runs over two real SSH hosts with the real worker and the tiny model: one parent run,
status per shard and combined, fetch merges to exactly the single-host results, and a lost
shard is started again alone on another host."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from gpu_worker.contract.schema import method_names
from gpu_worker.merge import MergeError, merge_results
from tests.conftest import REPO, git
from tests.helpers import kill_tmux
from tests.sshd_server import SSHServer

SHARDTEST = """name: shardtest
model: {base: BASE, checkpoints: CKPTS}
data: {source: data/sample, n_samples: 7, seed: 3, script: none}  # random model: no script
generation: {batch_size: 4, max_new_tokens: 6}
methods:
  greedy: {kind: greedy}
  beam_2: {kind: beam, num_beams: 2}
"""
# timings and provenance differ by nature; everything else must be identical
TIMING_KEYS = ("time_per_image_s", "images_per_s", "warmup_s", "wall_s")


@pytest.fixture(scope="module")
def sshd2(tmp_path_factory):
    """A second loopback sshd: the second GPU host."""
    with SSHServer(tmp_path_factory.mktemp("sshd2")) as server:
        yield server


def worker_project(root, tiny_model, orch_yaml: str):
    """A git project with a copy of the worker, the sample data and the shardtest playbook."""
    shutil.copytree(
        REPO / "gpu_worker", root / "gpu_worker", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "data" / "sample", root / "data" / "sample")
    (root / "playbooks").mkdir()
    (root / "playbooks" / "shardtest.yaml").write_text(
        SHARDTEST.replace("BASE", str(tiny_model / "base")).replace(
            "CKPTS", str(tiny_model / "checkpoints")
        )
    )
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    (root / "orch.yaml").write_text(orch_yaml + "push: {include: [data/sample]}\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "shards")
    return root


@pytest.fixture
def two_hosts(tmp_path, box, sshd, sshd2, isolated_home, tiny_model, monkeypatch):
    """The worker project with hosts gpu1 and gpu2 (two sshd servers), group pair, and local."""
    sshd2.install_client(isolated_home, "box2")
    host = f"remote_dir: {{}}, python: {sys.executable}, timeout: 10"
    root = worker_project(
        tmp_path / "proj",
        tiny_model,
        f"hosts:\n  gpu1: {{host: box, {host.format(tmp_path / 'r1')}}}\n"
        f"  gpu2: {{host: box2, {host.format(tmp_path / 'r2')}}}\n"
        f"  local: {{python: {sys.executable}}}\n"
        "groups:\n  pair: [gpu1, gpu2]\n",
    )
    monkeypatch.chdir(root)
    yield root
    for server in (sshd, sshd2):
        kill_tmux(server)


def wait_all(orch, run_ids, limit=240):
    """Poll until every run has finished; return their statuses."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        res = orch("status", "--json", *run_ids)
        assert res.exit_code == 0, res.output
        seen = json.loads(res.stdout)
        if seen and all(s["state"] in ("succeeded", "failed", "cancelled", "lost") for s in seen):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"not finished: {seen}")


def single_host_run(orch, project):
    """The same playbook, unsharded, on the local host: the reference results."""
    res = orch("run", "shardtest", "--host", "local")
    assert res.exit_code == 0, res.output
    run_id = res.stdout.split("started ")[1].split()[0]
    assert [s["state"] for s in wait_all(orch, [run_id])] == ["succeeded"]
    assert orch("fetch", run_id).exit_code == 0
    return json.loads((project / "results" / run_id / "results.json").read_text())


def assert_same_results(merged: dict, single: dict) -> None:
    """Every score equal to the last digit; only timings and provenance may differ."""
    assert method_names(merged) == method_names(single)
    for method in method_names(single):
        strip = {k: v for k, v in single[method].items() if k not in TIMING_KEYS}
        assert {k: v for k, v in merged[method].items() if k not in TIMING_KEYS} == strip
    assert merged["run"]["data"] == single["run"]["data"]
    assert merged["run"]["playbook_sha256"] == single["run"]["playbook_sha256"]
    best = merged["run"]["recommendation"]["best"]
    assert best == single["run"]["recommendation"]["best"]


def test_two_hosts_one_parent_status_fetch_merge_equals_single_host(two_hosts, orch):
    res = orch("run", "shardtest", "--host", "gpu1,gpu2")
    assert res.exit_code == 0, res.output
    parent = res.stdout.split("started ")[1].split(":")[0]
    assert f"{parent}-s0 on gpu1" in res.stdout and f"{parent}-s1 on gpu2" in res.stdout
    single = single_host_run(orch, two_hosts)

    shards = wait_all(orch, [parent])
    assert {(s["run_id"], s["host"], s["state"]) for s in shards} == {
        (f"{parent}-s0", "gpu1", "succeeded"),
        (f"{parent}-s1", "gpu2", "succeeded"),
    }
    # 7 samples x 2 methods: contiguous shards of 3 and 4 samples
    assert sorted(s["total"] for s in shards) == [6, 8]
    text = orch("status", parent).stdout
    assert f"{parent}: succeeded, 14/14 done" in text and "(2 succeeded)" in text

    res = orch("fetch", parent)
    assert res.exit_code == 0, res.output
    assert f"{parent}: merged (succeeded)" in res.stdout
    merged = json.loads((two_hosts / "results" / parent / "results.json").read_text())
    assert_same_results(merged, single)
    assert merged["run"]["run_id"] == parent and len(merged["run"]["shards"]) == 2
    lines = (two_hosts / "results" / parent / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 14
    rows = json.loads(orch("results", "--json").stdout)  # shards are not runs of their own
    assert {r["run_id"] for r in rows} == {parent, single["run"]["run_id"]}
    for name, doc in (("merged", merged), ("single", single)):
        print(name, json.dumps({k: v for k, v in doc["greedy"].items() if k != "settings"}))
        print(name, json.dumps(doc["run"]["data"]), doc["run"]["playbook_sha256"])


def test_lost_shard_runs_again_alone_on_another_host(two_hosts, orch, sshd2):
    res = orch("run", "shardtest", "--host", "pair", "--set", "data.n_samples=4")
    assert res.exit_code == 0, res.output
    parent = res.stdout.split("started ")[1].split(":")[0]
    # gpu2's job dies with its host's tmux server: no exit code, no session -> lost
    time.sleep(0.5)
    kill_tmux(sshd2)
    states = {s["run_id"]: s["state"] for s in wait_all(orch, [parent])}
    assert states == {f"{parent}-s0": "succeeded", f"{parent}-s1": "lost"}
    res = orch("fetch", parent)
    assert res.exit_code == 1 and f"{parent}: error (not merged)" in res.stdout
    assert not (two_hosts / "results" / parent).exists()

    res = orch("run", "--resume", parent, "--shard", "1", "--host", "gpu1")
    assert res.exit_code == 0, res.output
    assert f"resumed {parent}-s1 on gpu1" in res.stdout
    states = {s["run_id"]: (s["host"], s["state"]) for s in wait_all(orch, [parent])}
    assert states[f"{parent}-s1"] == ("gpu1", "succeeded")
    res = orch("fetch", parent)
    assert res.exit_code == 0 and f"{parent}: merged" in res.stdout, res.output
    merged = json.loads((two_hosts / "results" / parent / "results.json").read_text())
    assert merged["greedy"]["n"] == 4 and merged["run"]["data"]["n_samples"] == 4


def test_merge_refuses_shards_of_different_playbooks():
    book = {"data": {"source": "d", "shard": 0, "num_shards": 2}, "methods": {"g": {}}}
    other = {"data": {"source": "e", "shard": 1, "num_shards": 2}, "methods": {"g": {}}}
    with pytest.raises(MergeError, match="p-s1: its playbook is not shard 1 of p"):
        merge_results("p", "pb", [(book, {}, []), (other, {}, [])], ["p-s0", "p-s1"])


def test_merge_without_the_scoring_packages_says_what_to_install(tmp_path):
    """The merge runs in `python -m gpu_worker merge`; where jiwer cannot be imported (a laptop
    without the worker extra) it stops with one line naming the package to install."""
    shard = tmp_path / "p-s0"
    shard.mkdir()
    book = {"data": {"source": "d", "shard": 0, "num_shards": 1}, "model": {"base": "b"}}
    book["methods"] = {"g": {"kind": "greedy"}}
    (shard / "playbook.yaml").write_text(json.dumps(book))
    (shard / "results.json").write_text(json.dumps({"run": {}}))
    line = {"index": 0, "method": "g", "reference": "ab", "prediction": "ab", "seconds": 0.1}
    (shard / "predictions.jsonl").write_text(json.dumps(line) + "\n")
    blocker = tmp_path / "block"
    (blocker / "jiwer").mkdir(parents=True)
    (blocker / "jiwer" / "__init__.py").write_text("raise ModuleNotFoundError(name='jiwer')\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-m", "gpu_worker", "merge", "--parent", "p", "--playbook", "pb"]
    res = subprocess.run(
        [*cmd, "--out", str(tmp_path / "out"), str(shard)], capture_output=True, text=True, env=env
    )
    assert res.returncode == 2, res.stderr
    assert "(jiwer missing): pip install 'orch[worker]'" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
