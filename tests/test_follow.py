"""`orch run --follow` and `orch logs -f` on sharded and resumed runs, against the loopback sshd
and the local host with real tmux: shard lines prefixed `[host/shard]`, the exit code of the
combined state, usage errors exiting 2, Ctrl-C leaving the jobs running with one line saying how
to re-attach, and `--json` on run and cancel."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from tests.helpers import add_fake_job, kill_tmux, orch_cmd, poll

PREFIXED = re.compile(r"^\[(gpu/0|local/1)\] (step \d+|done)$")


@pytest.fixture
def fproj(project, box, sshd, tmp_path):
    """The fake job, host `gpu` (the loopback sshd) and `local`."""
    add_fake_job(project, "{steps: 3, sleep: 0.05, exit: 0, fail_shard: 9}")
    (project / "orch.yaml").write_text(
        f"hosts:\n  gpu: {{host: box, remote_dir: {tmp_path / 'r1'}, python: {sys.executable},"
        f" timeout: 5}}\n  local: {{python: {sys.executable}}}\n"
    )
    yield project
    kill_tmux(sshd)


def parent_of(stdout: str) -> str:
    return stdout.split("started ")[1].split(":")[0]


def test_follow_sharded_and_resumed_exit_with_their_state(fproj, orch):
    ok = orch("run", "job", "--host", "gpu,local", "--follow")
    assert ok.exit_code == 0, ok.output
    parent = parent_of(ok.stdout)
    shard_lines = [line for line in ok.stdout.splitlines() if line.startswith("[")]
    assert all(PREFIXED.match(line) for line in shard_lines), shard_lines  # whole lines
    for prefix in ("[gpu/0]", "[local/1]"):
        mine = [line.split("] ")[1] for line in shard_lines if line.startswith(prefix)]
        assert mine == ["step 0", "step 1", "step 2", "done"]
    assert f"{parent}: succeeded" in ok.stdout
    logs = orch("logs", parent, "-n", "1")  # a parent's logs: its shards', prefixed
    assert sorted(logs.stdout.splitlines()) == ["[gpu/0] done", "[local/1] done"]

    bad = orch("run", "job", "--host", "gpu,local", "--follow", "--set", "job.fail_shard=1")
    assert bad.exit_code == 1, bad.output
    failed = parent_of(bad.stdout)
    assert "[local/1] done" in bad.stdout and f"{failed}: failed" in bad.stdout
    # --resume with --follow: exits with the resumed run's state
    again = orch("run", "--resume", failed, "--shard", "1", "--host", "gpu", "--follow")
    assert again.exit_code == 1 and f"resumed {failed}-s1 on gpu" in again.stdout
    assert "step 2\ndone\n" in again.stdout and "exit code 3" in again.stdout
    other = orch("run", "--resume", failed, "--shard", "0", "--host", "local", "--follow")
    assert other.exit_code == 0, other.output
    assert "step 2\ndone\n" in other.stdout and "succeeded" in other.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["job", "--host", "gpu,local", "--queue"],
        ["job", "--host", "gpu", "--after", "x", "--shards", "2"],
        ["job", "--host", "gpu", "--shard", "1"],
        ["--resume", "job-x", "job"],
        ["job", "--host", "gpu", "--json", "--follow"],
    ],
)
def test_wrong_flag_combinations_exit_2(fproj, orch, args):
    res = orch("run", *args)
    assert res.exit_code == 2, res.output
    assert not (fproj / ".orch" / "runs").exists() or not list((fproj / ".orch" / "runs").iterdir())


def test_ctrl_c_on_sharded_follow_leaves_jobs_running(fproj, orch):
    sets = ["--set", "job.steps=400", "--set", "job.sleep=0.05"]
    proc = subprocess.Popen(
        orch_cmd("run", "job", "--host", "gpu,local", "--follow", *sets),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[str] = set()
    parent = ""
    for line in proc.stdout:
        parent = parent or (line.startswith("started ") and parent_of(line)) or ""
        if line.startswith("[") and "step 2" in line:
            seen.add(line.split("]")[0])
        if len(seen) == 2:
            break
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    err = proc.stderr.read()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "keeps running" in err and f"`orch logs {parent} --follow`" in err
    states = json.loads(orch("status", "--json", parent).stdout)
    assert [s["state"] for s in states] == ["running", "running"]

    res = orch("cancel", parent, "--grace", "2", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {
        "runs": {f"{parent}-s0": "cancelled", f"{parent}-s1": "cancelled"},
        "parent_removed": False,
    }

    # one run: followed in the main thread
    proc = subprocess.Popen(
        orch_cmd("run", "job", "--host", "gpu", "--follow", *sets),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = ""
    for line in proc.stdout:
        run_id = run_id or (line.startswith("started ") and line.split()[1]) or ""
        if line == "step 2\n":
            break
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    err = proc.stderr.read()
    assert err.splitlines() == [
        f"orch: stopped following; {run_id} keeps running on gpu; "
        f"re-attach with `orch logs {run_id} --follow`"
    ]
    assert json.loads(orch("status", "--json", run_id).stdout)[0]["state"] == "running"
    assert orch("cancel", run_id, "--grace", "1").exit_code == 0


def test_run_json_is_one_object(fproj, orch):
    res = orch("run", "job", "--host", "gpu", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["host"] == "gpu" and doc["playbook"] == "job" and not doc["resumed"]
    assert [p["host"] for p in doc["pushed"]] == ["gpu"] and res.stdout.count("\n{") == 0
    poll(lambda: orch("fetch", doc["run_id"]).stdout.count("fetched (succeeded)"), 30)
    sharded = json.loads(orch("run", "job", "--host", "gpu,local", "--json").stdout)
    assert [s["host"] for s in sharded["shards"]] == ["gpu", "local"] and not sharded["errors"]


def test_one_connection_per_host_per_command(fproj, orch, monkeypatch):
    """`orch fetch` of 3 runs on one host, and cancelling a 2-shard parent whose shards share
    one host, each open one SSH connection (counted where the transport opens them)."""
    from orchestrator.transport.ssh import SSHHost

    runs = [json.loads(orch("run", "job", "--host", "gpu", "--json").stdout)["run_id"]]
    for _ in range(2):
        poll(lambda: orch("status", "--json", runs[-1]).stdout.count('"succeeded"'), 30)
        res = orch("run", "job", "--host", "gpu", "--json")
        runs.append(json.loads(res.stdout)["run_id"])
    poll(lambda: orch("status", "--json", *runs).stdout.count('"succeeded"') == 3, 30)
    opened: list[str] = []
    real_open = SSHHost._open

    def counted(self):
        opened.append(self.name)
        return real_open(self)

    monkeypatch.setattr(SSHHost, "_open", counted)
    res = orch("fetch")
    assert res.stdout.count("fetched (succeeded)") == 3, res.output
    assert opened == ["gpu"]

    # a parent with both shards on gpu: shard 1 cancelled on local, started again on gpu
    sets = ["--set", "job.steps=400", "--json"]
    parent = json.loads(orch("run", "job", "--host", "gpu,local", *sets).stdout)["run_id"]
    assert orch("cancel", f"{parent}-s1", "--grace", "1").exit_code == 0
    moved = orch("run", "--resume", parent, "--shard", "1", "--host", "gpu", "--allow-concurrent")
    assert moved.exit_code == 0, moved.output
    opened.clear()
    res = orch("cancel", parent, "--grace", "1", "--json")
    assert json.loads(res.stdout)["runs"] == {
        f"{parent}-s0": "cancelled",
        f"{parent}-s1": "cancelled",
    }, res.output
    assert opened == ["gpu"]


def test_other_usage_errors_exit_2(fproj, orch):
    cases = {
        ("push", "--host", "gpu", "--watch", "--dry-run"): "do not go together",
        ("fetch", "--outputs"): "--outputs needs the RUN",
    }
    for args, message in cases.items():
        res = orch(*args)
        assert res.exit_code == 2 and message in res.output, res.output
