"""Faults on real links: two test hosts in network namespaces whose links are cut mid-command
(tests/netns.py). Host timeouts are short (TIMEOUT s) so each fault shows within seconds.

Recovery times are printed (`pytest -s`) and summarised in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import add_fake_job, orch_cmd, poll
from tests.helpers import start_run as start

HERE = Path(__file__).parent
TIMEOUT = 3
SLACK = 4  # scheduling on a busy 2-core CI machine


class Lab:
    """The project and its two namespace hosts `a` and `b` (remote dirs under tmp)."""

    def __init__(self, project: Path, hosts: list, remotes: dict[str, Path]) -> None:
        self.project, self.hosts, self.remotes = project, hosts, remotes

    def run_dir(self, host: str, run_id: str) -> Path:
        return self.remotes[host] / "runs" / run_id


@pytest.fixture
def lab(project, netns_hosts, isolated_home, tmp_path) -> Lab:
    a, b = netns_hosts(2)
    a.sshd.install_client(isolated_home, "na")
    b.sshd.install_client(isolated_home, "nb")
    job = "{steps: 5, sleep: 0.05, exit: 0, corrupt: false, ignore_signals: false, big_mb: 0}"
    add_fake_job(project, job)
    remotes = {"a": tmp_path / "remote-a", "b": tmp_path / "remote-b"}
    (project / "orch.yaml").write_text(
        "hosts:\n"
        + "".join(
            f"  {n}: {{host: n{n}, remote_dir: {remotes[n]}, python: {sys.executable},"
            f" timeout: {TIMEOUT}}}\n"
            for n in remotes
        )
    )
    return Lab(project, [a, b], remotes)


def statuses(orch, *args: str):
    res = orch("status", "--json", *args)
    return res, {s["run_id"]: s for s in json.loads(res.stdout or "[]")}


def test_link_cut_while_status_polls_two_hosts(lab, orch):
    a, _ = lab.hosts
    slow = start(orch, "a", "job.steps=40", "job.sleep=0.1")
    fast = start(orch, "b", "job.steps=2")
    a.cut()
    t0 = time.monotonic()
    res, seen = statuses(orch)
    took = time.monotonic() - t0
    print(f"status with a cut link: exit {res.exit_code} after {took:.1f}s")
    assert res.exit_code == 3 and "a: unreachable" in res.stderr
    assert took <= TIMEOUT + SLACK
    assert seen[slow]["reachable"] is False and seen[slow]["state"] == "running"
    assert seen[fast]["reachable"] is True
    # the job on `a` finishes while its link is down; once it is back, status says so
    poll(lambda: (lab.run_dir("a", slow) / "exit_code").exists(), 30)
    a.restore()
    t0 = time.monotonic()

    def succeeded():
        res, seen = statuses(orch)
        return res.exit_code == 0 and seen[slow]["state"] == "succeeded"

    poll(succeeded, 20, every=0.2)
    print(f"status after the link came back: succeeded within {time.monotonic() - t0:.1f}s")


def test_link_cut_status_within_default_timeout(lab, orch):
    """With the default host timeout (15 s) a cut host is reported within 20 s."""
    cfg = lab.project / "orch.yaml"
    cfg.write_text(cfg.read_text().replace(f", timeout: {TIMEOUT}}}", "}"))
    lab.hosts[1].cut()
    t0 = time.monotonic()
    res = orch("status", "--host", "b")
    took = time.monotonic() - t0
    print(f"status, default timeout, cut link: exit {res.exit_code} after {took:.1f}s")
    assert res.exit_code == 3 and "b: unreachable" in res.stderr
    assert took <= 20


def test_status_host_without_local_runs_says_unreachable(lab, orch, isolated_home):
    a, b = lab.hosts
    a.cut()
    res = orch("status", "--host", "a")
    assert res.exit_code == 3
    assert "a: unreachable" in res.stderr and "no runs seen" in res.stdout
    a.restore()
    assert orch("status", "--host", "a").exit_code == 0
    # a changed host key: `a` now presents b's key
    known = isolated_home / ".ssh" / "known_hosts"
    theirs = b.sshd.host_key.with_suffix(".pub").read_text().split()[1]
    lines = known.read_text().splitlines()
    known.write_text(
        "\n".join(
            f"{x.split()[0]} ssh-ed25519 {theirs}" if x.startswith(f"[{a.address}]") else x
            for x in lines
        )
        + "\n"
    )
    res = orch("status", "--host", "a")
    assert res.exit_code == 3 and "CHANGED" in res.stderr


def _connections(address: str, pid: int) -> int:
    """TCP sockets to `address` that process `pid` holds open (any state)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "all", "dst", address], capture_output=True, text=True
    ).stdout
    return len([x for x in out.splitlines() if f"pid={pid}," in x])


def test_logs_bounded_exit_3_and_one_connection(lab, orch, isolated_home):
    a, b = lab.hosts
    run_id = start(orch, "a", "job.steps=60", "job.sleep=0.1")
    log = lab.run_dir("a", run_id) / "log.txt"
    poll(lambda: log.exists() and log.stat().st_size > 0, 10)
    a.cut()
    t0 = time.monotonic()
    res = orch("logs", run_id)
    took = time.monotonic() - t0
    print(f"logs (no -f) on a cut link: exit {res.exit_code} after {took:.1f}s")
    assert res.exit_code == 3 and "unreachable" in res.stderr
    assert took <= 2 * TIMEOUT + SLACK
    # -f on a cut link: it retries with backoff, never more than one connection at a time
    proc = subprocess.Popen(orch_cmd("logs", run_id, "-f"), stderr=subprocess.PIPE, text=True)
    most = 0
    deadline = time.monotonic() + 2 * TIMEOUT + 2
    while time.monotonic() < deadline:
        most = max(most, _connections(a.address, proc.pid))
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    assert most == 1  # it kept trying, never with two connections at once
    a.restore()
    # a wrong host key: exit 3 at once, with or without -f
    known = isolated_home / ".ssh" / "known_hosts"
    theirs = b.sshd.host_key.with_suffix(".pub").read_text().split()[1]
    known.write_text(
        "".join(
            f"{x.split()[0]} ssh-ed25519 {theirs}\n" if x.startswith(f"[{a.address}]") else x + "\n"
            for x in known.read_text().splitlines()
        )
    )
    for args in (["logs", run_id], ["logs", run_id, "-f"]):
        proc = subprocess.run(orch_cmd(*args), capture_output=True, text=True, timeout=30)
        assert proc.returncode == 3 and "CHANGED" in proc.stderr, proc.stderr


def test_logs_follow_link_cut_no_line_lost_or_repeated(lab, orch):
    a, _ = lab.hosts
    run_id = start(orch, "a", "job.steps=50", "job.sleep=0.1")
    proc = subprocess.Popen(
        orch_cmd("logs", run_id, "-f", "-n", "1000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    a.cut()
    time.sleep(2 * TIMEOUT + 2)  # long enough to be noticed: keepalive + TCP_USER_TIMEOUT
    a.restore()
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    print(f"logs -f: finished {time.monotonic() - t0:.1f}s after the link came back")
    assert proc.returncode == 0, err
    assert "reconnecting" in err
    assert out.splitlines() == [f"step {i}" for i in range(50)] + ["done"]


def _tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".orch-identity.json"
    }


def test_link_cut_during_push_keeps_old_tree_then_next_push_completes(lab, orch):
    a, _ = lab.hosts
    project, remote = lab.project, lab.remotes["a"]
    assert orch("push", "--host", "a").exit_code == 0
    old = _tree(remote / "code")
    (project / "gpu_worker" / "engine.py").write_text("VALUE = 2\n")
    (project / "gpu_worker" / "big.bin").write_bytes(os.urandom(48 << 20))
    proc = subprocess.Popen(orch_cmd("push", "--host", "a"), stderr=subprocess.PIPE, text=True)
    poll(lambda: list((remote / ".trees").glob(".incoming-*")), 30, every=0.01)
    a.cut()
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    print(f"push on a cut link: exit {proc.returncode} {time.monotonic() - t0:.1f}s after the cut")
    assert proc.returncode == 3, err
    assert _tree(remote / "code") == old  # the previous tree, whole
    a.restore()
    t0 = time.monotonic()
    res = orch("push", "--host", "a")
    print(f"next push: exit {res.exit_code} after {time.monotonic() - t0:.1f}s")
    assert res.exit_code == 0, res.output
    pushed = _tree(remote / "code")
    assert pushed["gpu_worker/big.bin"] == _tree(project / "gpu_worker")["big.bin"]
    assert (remote / "code" / "gpu_worker" / "engine.py").read_text() == "VALUE = 2\n"
    # the cut push's staging goes once its session on the host is gone (sshd drops it)

    def no_leftover():
        return not list((remote / ".trees").glob(".incoming-*"))

    poll(no_leftover, 30, every=0.5)


def _remote_tar_running(host) -> bool:
    return any(cmd.startswith("tar -cz") for cmd in host.processes())


def test_link_cut_during_fetch_writes_nothing_then_fetch_matches(lab, orch):
    a, _ = lab.hosts
    run_id = start(orch, "a", "job.steps=1", "job.big_mb=40")
    poll(lambda: (lab.run_dir("a", run_id) / "exit_code").exists(), 60)
    proc = subprocess.Popen(
        orch_cmd("fetch", run_id), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    poll(lambda: _remote_tar_running(a), 30, every=0.01)
    a.cut()
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    print(f"fetch on a cut link: exit {proc.returncode} {time.monotonic() - t0:.1f}s after the cut")
    assert proc.returncode == 3, out + err
    assert f"{run_id}: unreachable" in out
    results = lab.project / "results"
    assert not results.exists() or list(results.iterdir()) == []  # no partial file, no temp
    a.restore()
    res = orch("fetch", run_id)
    assert res.exit_code == 0 and f"{run_id}: fetched (succeeded)" in res.stdout, res.output
    here, there = results / run_id, lab.run_dir("a", run_id)
    for name in ("results.json", "predictions.jsonl", "log.txt", "playbook.yaml", "exit_code"):
        assert (here / name).read_bytes() == (there / name).read_bytes(), name


def test_sshd_killed_and_restarted_while_job_runs(lab, orch):
    a, _ = lab.hosts
    run_id = start(orch, "a", "job.steps=30", "job.sleep=0.1")
    a.sshd.stop()
    res, seen = statuses(orch)
    assert res.exit_code == 3 and seen[run_id]["reachable"] is False
    poll(lambda: (lab.run_dir("a", run_id) / "exit_code").exists(), 30)
    a.sshd.start()
    res = orch("fetch", run_id)
    assert res.exit_code == 0 and f"{run_id}: fetched (succeeded)" in res.stdout, res.output
    assert "step 29" in (lab.project / "results" / run_id / "log.txt").read_text()
