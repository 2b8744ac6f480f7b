"""Faults on the host side, against the real loopback sshd and tmux: concurrent pushes, leftovers,
bytecode, a full or read-only remote_dir, secrets in the process list, fetch during cancel, a
worker killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import add_fake_job, kill_tmux, orch_cmd, poll, start_run, worker_checkout

HERE = Path(__file__).parent
CANARY = "hf_CANARYfaultsuite0123456789abcdef"


@pytest.fixture
def hostproj(project, box, tmp_path, sshd):
    """The test project, the fake job playbook and host `gpu` (the loopback sshd)."""
    job = "{steps: 5, sleep: 0.05, exit: 0, corrupt: false, ignore_signals: false, big_mb: 0}"
    add_fake_job(project, job)
    (project / "orch.yaml").write_text(
        f"hosts:\n  gpu: {{host: box, remote_dir: {tmp_path / 'remote'}, python: {sys.executable},"
        " timeout: 5}\n"
    )
    yield project
    kill_tmux(sshd)


def start(orch, *sets: str, playbook: str = "job") -> str:
    return start_run(orch, "gpu", *sets, playbook=playbook)


def state_of(orch, run_id: str) -> dict:
    res = orch("status", "--json", run_id)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)[0]


# -- push ----------------------------------------------------------------------------------------


def test_two_pushes_at_once_leave_no_stray_copy(hostproj, tmp_path):
    remote = tmp_path / "remote"
    for round_ in range(3):
        (hostproj / "gpu_worker" / "engine.py").write_text(f"VALUE = {round_}\n")
        procs = [
            subprocess.Popen(orch_cmd("push", "--host", "gpu"), stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        for p in procs:
            assert p.wait(60) == 0, p.stderr.read()
        code = remote / "code"
        assert (code / "gpu_worker" / "engine.py").read_text() == f"VALUE = {round_}\n"
        assert not [p for p in code.rglob("*") if ".incoming" in p.name]
        assert not list((remote / ".trees").glob(".incoming-*"))


def test_leftover_of_interrupted_push_is_removed(hostproj, orch, tmp_path):
    assert orch("push", "--host", "gpu").exit_code == 0
    stray = tmp_path / "remote" / ".trees" / ".incoming-99999"
    (stray / "gpu_worker").mkdir(parents=True)
    (stray / "gpu_worker" / "half.py").write_text("x = ")
    (hostproj / "gpu_worker" / "engine.py").write_text("VALUE = 9\n")
    assert orch("push", "--host", "gpu").exit_code == 0
    assert not stray.exists()


def test_pycache_never_pushed_nor_causes_resends(hostproj, orch, tmp_path):
    assert orch("push", "--host", "gpu").exit_code == 0
    code = tmp_path / "remote" / "code"
    for where in (hostproj / "gpu_worker", code / "gpu_worker"):  # both sides ran Python
        (where / "__pycache__").mkdir(exist_ok=True)
        (where / "__pycache__" / "engine.cpython-311.pyc").write_bytes(os.urandom(64))
    (hostproj / "gpu_worker" / "stray.pyc").write_bytes(b"\0")
    res = orch("push", "--host", "gpu", "--json")
    got = json.loads(res.stdout)
    assert (got["sent"], got["deleted"]) == ([], []), got
    assert not (code / "gpu_worker" / "stray.pyc").exists()


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def mounts(tmp_path):
    """Mount points made by a test, unmounted afterwards (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs or a read-only bind needs root (CI runs as root)")
    probe = tmp_path / "mount-probe"
    probe.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount here: {getattr(exc, 'stderr', exc)}")
    subprocess.run(["umount", str(probe)], check=True)
    made: list[Path] = []
    yield made
    for m in reversed(made):
        subprocess.run(["umount", "-l", str(m)], check=False)


def test_full_remote_dir_clear_error_nothing_half_started(hostproj, orch, tmp_path, mounts):
    remote = tmp_path / "remote"
    remote.mkdir()
    _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(remote))
    mounts.append(remote)
    (hostproj / "gpu_worker" / "big.bin").write_bytes(os.urandom(3 << 20))
    res = orch("push", "--host", "gpu")
    assert res.exit_code == 1
    assert "gpu: push to" in res.stderr and "No space left on device" in res.stderr
    assert "previous code tree is unchanged" in res.stderr
    assert not (remote / "code").exists() and not list((remote / ".trees").glob(".incoming-*"))
    # code fits, then the disk fills up: launch fails cleanly, no job, no run folder, no record
    (hostproj / "gpu_worker" / "big.bin").unlink()
    assert orch("push", "--host", "gpu").exit_code == 0
    subprocess.run(["dd", "if=/dev/zero", f"of={remote}/fill", "bs=64k"], capture_output=True)
    res = orch("run", "job", "--host", "gpu")
    assert res.exit_code == 1 and "No space left on device" in res.stderr, res.output
    left = list((remote / "runs").iterdir())
    assert not left, (res.stderr, [list(p.iterdir()) for p in left])
    assert not (hostproj / ".orch" / "runs").exists() or not list(
        (hostproj / ".orch" / "runs").iterdir()
    )


def test_read_only_remote_dir_clear_error(hostproj, orch, tmp_path, mounts):
    remote = tmp_path / "remote"
    assert orch("push", "--host", "gpu").exit_code == 0
    before = (remote / "code" / "gpu_worker" / "engine.py").read_text()
    _mount("--bind", str(remote), str(remote))
    mounts.append(remote)
    _mount("-o", "remount,ro,bind", str(remote))
    (hostproj / "gpu_worker" / "engine.py").write_text("VALUE = 7\n")
    res = orch("push", "--host", "gpu")
    assert res.exit_code == 1 and "Read-only file system" in res.stderr, res.output
    assert (remote / "code" / "gpu_worker" / "engine.py").read_text() == before
    res = orch("run", "job", "--host", "gpu")
    assert res.exit_code == 1 and "Read-only file system" in res.stderr


# -- jobs ----------------------------------------------------------------------------------------


def test_command_playbook_logs_every_command(hostproj, orch, tmp_path):
    (hostproj / "playbooks" / "two.yaml").write_text(
        'command: "echo first; echo to-stderr >&2; '
        '{python} gpu_worker/fake_job.py --playbook {playbook} --out {out}"\n'
        "job: {steps: 1}\n"
    )
    run_id = start(orch, playbook="two")
    poll(lambda: state_of(orch, run_id)["state"] == "succeeded", 30)
    log = (tmp_path / "remote" / "runs" / run_id / "log.txt").read_text()
    assert log.splitlines() == ["first", "to-stderr", "step 0", "done"]


def test_secrets_never_in_process_list_or_any_output(hostproj, orch, tmp_path, monkeypatch, sshd):
    monkeypatch.setenv("HF_TOKEN", CANARY)
    cfg = hostproj / "orch.yaml"
    cfg.write_text(
        cfg.read_text().replace("timeout: 5}", f"timeout: 5, env: {{HF_TOKEN: {CANARY}}}}}")
    )
    (hostproj / "playbooks" / "tok.yaml").write_text(
        'command: "test -n \\"$HF_TOKEN\\" && echo token-set; '
        '{python} gpu_worker/fake_job.py --playbook {playbook} --out {out}"\n'
        "job: {steps: 30, sleep: 0.1}\n"
    )
    outputs = []
    res = orch("run", "tok", "--host", "gpu")
    outputs.append(res.output)
    run_id = res.stdout.split("started ")[1].split()[0]
    deadline = time.monotonic() + 30
    seen_running = False
    while time.monotonic() < deadline:  # every process on the machine, while the job runs
        ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
        assert CANARY not in ps
        res = orch("status", "--json", run_id)
        outputs.append(res.output)
        state = json.loads(res.stdout)[0]["state"]
        seen_running |= state == "running"
        if state != "running":
            break
        time.sleep(0.1)
    assert seen_running and state == "succeeded"
    for args in (["logs", run_id], ["status"], ["fetch"], ["results"]):
        outputs.append(orch(*args).output)
    run_folder = tmp_path / "remote" / "runs" / run_id
    assert "token-set" in (run_folder / "log.txt").read_text()  # the job did get it
    assert not (run_folder / "env").exists()  # read by the job, then removed
    assert all(CANARY not in o for o in outputs)
    leaks = [
        str(p)
        for top in (tmp_path, sshd.dir, Path(os.environ["HOME"]))
        for p in top.rglob("*")
        if p.is_file() and p.name != "orch.yaml" and CANARY.encode() in p.read_bytes()
    ]
    assert leaks == []


def test_fetch_during_cancel_waits_for_the_exit_code(hostproj, orch, tmp_path):
    run_id = start(orch, "job.steps=300", "job.sleep=0.05", "job.ignore_signals=true")
    poll(lambda: state_of(orch, run_id)["done"], 30)
    cancel = subprocess.Popen(
        orch_cmd("cancel", run_id, "--grace", "1.5"), stdout=subprocess.PIPE, text=True
    )
    poll(lambda: (tmp_path / "remote" / "runs" / run_id / "cancelled").exists(), 10, 0.02)
    res = orch("fetch", run_id)
    assert res.exit_code == 0 and f"{run_id}: still running (cancelling)" in res.stdout
    assert not (hostproj / "results" / run_id).exists()
    assert cancel.wait(30) == 0 and "cancelled" in cancel.stdout.read()
    res = orch("fetch", run_id)
    assert f"{run_id}: fetched (cancelled)" in res.stdout, res.output
    folder = hostproj / "results" / run_id
    assert (folder / "exit_code").read_text().strip() == "137"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's 0700


# -- a worker killed mid-run, then resumed -------------------------------------------------------


@pytest.fixture
def workerproj(tmp_path, box, sshd, monkeypatch, tiny_model):
    """This repository's worker and sample data, a two-method playbook on the tiny model."""

    root = tmp_path / "proj"
    playbook = (
        f"model: {{tiny: {tiny_model}}}\n"
        "data: {source: data/sample, n_samples: 6, seed: 7, script: none}\n"
        "generation: {batch_size: 1, max_new_tokens: 12}\n"
        "methods:\n  baseline: {kind: greedy}\n  beam_search: {kind: beam, num_beams: 2}\n"
    )
    yield from worker_checkout(root, tmp_path, sshd, monkeypatch, {"resumable": playbook})


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _whole_lines(path: Path) -> int:
    """Lines of predictions.jsonl that parse (a line torn by the kill does not count)."""
    count = 0
    for line in path.read_text().splitlines():
        try:
            json.loads(line)
            count += 1
        except json.JSONDecodeError:
            pass
    return count


def _scores(results: dict) -> dict:
    keys = ("cer", "wer", "exact_match", "n", "failures")
    return {m: {k: v[k] for k in keys} for m, v in results.items() if m != "run"}


def _texts(path: Path) -> dict:
    return {
        (x["index"], x["method"]): x.get("prediction")
        for x in map(json.loads, path.read_text().splitlines())
    }


def test_worker_sigkill_then_resume_equals_uninterrupted(workerproj, orch, tmp_path):
    runs = tmp_path / "remote" / "runs"
    whole = start(orch, playbook="resumable")
    poll(lambda: state_of(orch, whole)["state"] in ("succeeded", "failed"), 240, 0.5)
    assert state_of(orch, whole)["state"] == "succeeded"
    res = orch("run", "--resume", whole)
    assert res.exit_code == 1 and "already succeeded; nothing to resume" in res.stderr
    killed = start(orch, playbook="resumable")
    preds = runs / killed / "predictions.jsonl"
    poll(lambda: _lines(preds) >= 3, 240, 0.02)
    wrapper = (runs / killed / "pid").read_text().strip()
    worker = subprocess.run(["pgrep", "-P", wrapper], capture_output=True, text=True).stdout
    os.kill(int(worker.split()[0]), 9)
    kept = _whole_lines(preds)
    assert 3 <= kept < 12  # stopped mid-run
    s = poll(lambda: (x := state_of(orch, killed))["state"] != "running" and x, 30)
    assert s["state"] in ("failed", "lost") and s["exit_code"] == 137
    assert any("image(s) to decode" in line for line in s["log_tail"])  # the log's tail
    res = orch("run", "--resume", killed)
    assert res.exit_code == 0 and f"resumed {killed} on gpu" in res.stdout, res.output
    poll(lambda: state_of(orch, killed)["state"] in ("succeeded", "failed"), 240, 0.5)
    assert orch("fetch").exit_code == 0
    got = {
        r: json.loads((workerproj / "results" / r / "results.json").read_text())
        for r in (whole, killed)
    }
    assert _scores(got[killed]) == _scores(got[whole])
    texts = _texts(workerproj / "results" / killed / "predictions.jsonl")
    assert len(texts) == 12 and all(isinstance(t, str) for t in texts.values())
    assert texts == _texts(workerproj / "results" / whole / "predictions.jsonl")
    log = (workerproj / "results" / killed / "log.txt").read_text()
    resumed = log.split("loading ")[2]  # the first attempt's log is kept, the resume appended
    assert f"baseline: {max(0, 6 - kept)} image(s) to decode" in resumed


def test_env_file_carries_hostile_values_literally(tmp_path):
    from orchestrator.config import HostConfig
    from orchestrator.scripts import env_file

    value = "a'b\"c $(touch pwned) `id` \\n; rm -rf ~\nline2"
    host = HostConfig(name="x", hostname="x", env={"TOKEN": value})
    (tmp_path / "env").write_bytes(env_file(host))
    out = subprocess.run(
        ["bash", "-c", '. ./env && printf %s "$TOKEN"'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == value and not (tmp_path / "pwned").exists()
