"""Bad files and settings around runs (issue 17): a failed shard never merged as succeeded, a
host removed from orch.yaml, hostile JSON from a host, a bad local run record, an absurd
`timeout:`. Real sshd, tmux and the real worker where the defect needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import add_fake_job, kill_tmux, orch_cmd, poll, start_run
from tests.test_shards import sshd2, two_hosts, wait_all  # noqa: F401


def test_failed_shard_is_never_merged_as_succeeded(two_hosts, orch):  # noqa: F811
    # the real worker on both shards; shard 1's command then exits 1 (its results.json exists)
    command = (
        'command: "{python} -m gpu_worker run {playbook} --out {out} && '
        "! grep -q 'shard: 1' {playbook}\"\n"
    )
    book = (two_hosts / "playbooks" / "shardtest.yaml").read_text()
    (two_hosts / "playbooks" / "failshard.yaml").write_text(book + command)
    res = orch("run", "failshard", "--host", "gpu1,gpu2")
    assert res.exit_code == 0, res.output
    parent = res.stdout.split("started ")[1].split(":")[0]
    states = {s["run_id"]: (s["state"], s["exit_code"]) for s in wait_all(orch, [parent])}
    assert states == {f"{parent}-s0": ("succeeded", 0), f"{parent}-s1": ("failed", 1)}
    res = orch("fetch", parent)
    assert res.exit_code == 1, res.output
    assert "merged (succeeded)" not in res.output
    assert (
        f"{parent}: not merged: shard(s) did not succeed: {parent}-s1 (exit code 1)" in res.output
    )
    assert not (two_hosts / "results" / parent).exists()
    assert (two_hosts / "results" / f"{parent}-s1" / "results.json").is_file()  # fetched, kept


@pytest.fixture
def hosts2(project, box, tmp_path, sshd):
    """Hosts `gpu` and `gpu2` (the same loopback sshd, two remote_dirs), the fake job."""
    add_fake_job(project, "{steps: 2, sleep: 0.01, exit: 0, corrupt: false}")
    line = "{{host: box, remote_dir: {}, python: " + sys.executable + ", timeout: {}}}"
    (project / "orch.yaml").write_text(
        f"hosts:\n  gpu: {line.format(tmp_path / 'r1', 5)}\n"
        f"  gpu2: {line.format(tmp_path / 'r2', 5)}\n"
    )
    yield project
    kill_tmux(sshd)


def finished(orch, run_id: str) -> dict:
    def done():
        res = orch("status", "--json", run_id)
        row = json.loads(res.stdout)[0]
        return row["state"] in ("succeeded", "failed") and row

    return poll(done, 30)


def test_host_removed_from_config_shows_unknown_host_and_the_rest_works(hosts2, orch):
    kept = start_run(orch, "gpu")
    assert finished(orch, kept)["state"] == "succeeded"
    gone = start_run(orch, "gpu2")
    assert finished(orch, gone)["state"] == "succeeded"
    text = (hosts2 / "orch.yaml").read_text()
    (hosts2 / "orch.yaml").write_text("\n".join(text.splitlines()[:2]) + "\n")  # gpu2 removed
    res = cli("status", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["run_id"]: r for r in json.loads(res.stdout)}
    assert rows[kept]["state"] == "succeeded" and rows[kept]["note"] == ""
    assert rows[gone]["note"].startswith("unknown host 'gpu2'"), rows[gone]
    assert "unknown host 'gpu2'" in res.stderr
    res = cli("fetch")
    assert res.returncode == 0, res.stderr
    assert f"{kept}: fetched (succeeded)" in res.stdout and gone not in res.stdout
    assert "unknown host 'gpu2'" in res.stderr and "skipped" in res.stderr


def cli(*args: str) -> subprocess.CompletedProcess:
    """orch as its own process (its warnings reach stderr as a user sees them)."""
    return subprocess.run(orch_cmd(*args), capture_output=True, text=True, timeout=60)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_deep_json_from_a_host_is_that_runs_error(hosts2, orch, tmp_path):
    bad = start_run(orch, "gpu")
    assert finished(orch, bad)["state"] == "succeeded"
    good = start_run(orch, "gpu2")
    assert finished(orch, good)["state"] == "succeeded"
    folder = tmp_path / "r1" / "runs" / bad
    (folder / "progress.json").write_text(deep(100_000))  # item 7: every status crashed
    res = orch("status", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["run_id"]: r for r in json.loads(res.stdout)}
    assert "progress.json: too large, not read" in rows[bad]["error"]
    assert rows[good]["error"] == ""
    (folder / "progress.json").write_text(deep(5_000))  # small but deep
    rows = {r["run_id"]: r for r in json.loads(orch("status", "--json").stdout)}
    assert "progress.json: JSON nested deeper than 32 levels" in rows[bad]["error"]
    (folder / "results.json").write_text('{"baseline": ' + deep(100_000) + "}")  # item 6
    res = orch("fetch")
    assert res.exit_code == 1, res.output
    assert f"{good}: fetched (succeeded)" in res.stdout
    assert f"{bad}: error" in res.stdout and "nested deeper than 32 levels" in res.stdout
    assert not (hosts2 / "results" / bad).exists()


def test_bad_run_record_is_a_warning_naming_its_file(hosts2, orch):
    good = start_run(orch, "gpu")
    finished(orch, good)
    runs = hosts2 / ".orch" / "runs"
    record = json.loads((runs / f"{good}.json").read_text())
    (runs / "evil-id.json").write_text(json.dumps({**record, "run_id": "../../etc"}))
    (runs / "evil-host.json").write_text(json.dumps({**record, "run_id": "x-1", "host": "a;b"}))
    res = cli("status", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["run_id"] for r in json.loads(res.stdout)] == [good]
    assert f"{runs / 'evil-id.json'}: corrupt run record" in res.stderr
    assert f"{runs / 'evil-host.json'}: corrupt run record" in res.stderr
    assert "invalid host 'a;b'" in res.stderr and "ssh" not in res.stderr
    res = orch("fetch")
    assert res.exit_code == 0 and f"{good}: fetched (succeeded)" in res.stdout, res.output


def test_absurd_timeout_is_refused_naming_the_field(hosts2, orch):
    text = (hosts2 / "orch.yaml").read_text()
    (hosts2 / "orch.yaml").write_text(text.replace("timeout: 5", "timeout: 1.0e+12", 1))
    res = orch("status", "--host", "gpu")
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "orch: error: orch.yaml: hosts.gpu.timeout: expected at most 86400 seconds (one day), "
        "got 1000000000000.0"
    ]


def test_remote_command_timeout_is_one_line(hosts2, orch, tmp_path):
    run_id = start_run(orch, "gpu")
    finished(orch, run_id)
    text = (hosts2 / "orch.yaml").read_text()
    (hosts2 / "orch.yaml").write_text(text.replace("timeout: 5", "timeout: 2", 1))
    hang = tmp_path / "r1" / "runs" / "hang-1"
    hang.mkdir()
    os.mkfifo(hang / "run.json")  # reading it blocks: the status command never answers
    try:
        res = orch("status", "--host", "gpu")
    finally:  # let the host's blocked reader go (an end of file), so nothing is left running
        try:
            os.close(os.open(hang / "run.json", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader left
            pass
    assert res.exit_code == 3, res.output
    [line] = [x for x in res.stderr.splitlines() if "no answer within 2s" in x]
    assert line.endswith("...") and len(res.stderr.strip().splitlines()) == 1, res.stderr
