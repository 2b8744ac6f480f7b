"""Sharded runs with a shard that never started (issue 17, item 20), against the loopback sshd
and a host that accepts TCP but never speaks SSH: the parent commands show that shard as `not
started` with the command that starts it and work on the rest; a launch killed before any shard
started leaves a parent that status shows and cancel removes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from tests.helpers import add_fake_job, kill_tmux, orch_cmd, poll


@pytest.fixture
def silent_port():
    """A listening socket that never answers: an SSH connection to it hangs until its timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def pair(project, box, sshd, tmp_path, silent_port):
    """Hosts `gpu` (the loopback sshd), `mute` and `mute2` (never answer), the fake job."""
    add_fake_job(project, "{steps: 3, sleep: 0.05, exit: 0}")
    (project / "orch.yaml").write_text(
        f"hosts:\n  gpu: {{host: box, remote_dir: {tmp_path / 'r1'}, python: {sys.executable},"
        " timeout: 5}\n"
        f"  mute: {{host: 127.0.0.1, port: {silent_port}, remote_dir: /tmp/never,"
        " timeout: 2}\n"
        f"  mute2: {{host: 127.0.0.1, port: {silent_port}, remote_dir: /tmp/never,"
        " timeout: 2}\n"
    )
    yield project
    kill_tmux(sshd)


def test_parent_commands_work_with_a_shard_that_never_started(pair, orch, tmp_path):
    res = orch("run", "job", "--host", "gpu,mute")
    assert res.exit_code != 0 and "shard 1 on mute" in res.output, res.output
    parent = json.loads(next((pair / ".orch" / "shards").glob("*.json")).read_text())["parent"]
    hint = f"`orch run --resume {parent} --shard 1` starts it"
    poll(lambda: (tmp_path / "r1" / "runs" / f"{parent}-s0" / "exit_code").exists(), 30)

    res = orch("status", parent)
    assert res.exit_code == 0, res.output
    assert f"{parent}-s1: never started; {hint}" in res.stdout
    assert "not started" in res.stdout and f"{parent}: not started" in res.stdout
    seen = {s["run_id"]: s["state"] for s in json.loads(orch("status", "--json", parent).stdout)}
    assert seen == {f"{parent}-s0": "succeeded", f"{parent}-s1": "not started"}
    assert f"{parent}-s1" in orch("status").stdout  # also without naming the parent

    res = orch("fetch", parent)
    assert "Traceback" not in res.output and res.exit_code == 1, res.output
    assert f"{parent}-s0: fetched (succeeded)" in res.stdout
    assert f"{parent}-s1: not final (not started) -> " not in res.stdout
    assert f"{parent}-s1: not final (not started): never started; {hint}" in res.stdout
    assert (pair / "results" / f"{parent}-s0" / "results.json").is_file()
    assert not (pair / "results" / parent).exists()  # a missing shard: not merged

    res = orch("cancel", parent)
    assert res.exit_code == 0, res.output
    assert f"{parent}-s0: finished" in res.stdout and f"{parent}-s1: not started" in res.stdout
    assert (pair / ".orch" / "shards" / f"{parent}.json").exists()  # s0 ran: the parent stays
    # the hint works: the shard starts (here on the other host)
    res = orch("run", "--resume", parent, "--shard", "1", "--host", "gpu")
    assert res.exit_code == 0 and f"{parent}-s1 on gpu" in res.stdout, res.output
    seen = {s["run_id"]: s["state"] for s in json.loads(orch("status", "--json", parent).stdout)}
    assert seen[f"{parent}-s1"] in ("running", "succeeded")


def test_launch_killed_before_any_shard_started(pair, orch, tmp_path):
    (pair / "orch.yaml").write_text(
        (pair / "orch.yaml").read_text().replace("timeout: 2", "timeout: 60")
    )
    proc = subprocess.Popen(orch_cmd("run", "job", "--host", "mute,mute2"))
    shards = pair / ".orch" / "shards"
    poll(lambda: list(shards.glob("*.json")), 30)
    proc.send_signal(signal.SIGKILL)  # while both shards wait for the mute host
    proc.wait(10)
    (path,) = shards.glob("*.json")
    parent = path.stem

    res = orch("status")
    assert res.exit_code == 0, res.output
    for i in (0, 1):
        assert f"`orch run --resume {parent} --shard {i}` starts it" in res.stdout
    res = orch("status", parent)
    assert res.exit_code == 0 and f"{parent}: not started" in res.stdout, res.output
    res = orch("fetch", parent)
    assert "Traceback" not in res.output and res.exit_code in (0, 1), res.output
    assert f"{parent}-s0: not final (not started)" in res.stdout
    res = orch("cancel", parent)
    assert res.exit_code == 0, res.output
    assert f"{parent}: no shard had started; its parent record is removed" in res.stdout
    assert not path.exists()
    assert orch("status").stdout.strip() == "no runs"
