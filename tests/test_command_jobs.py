"""`command:` jobs as runs like any other, on the loopback sshd and real tmux: the exit status is
the state, progress comes from the log (`orch-progress` lines, Trainer lines), `outputs:` are
listed and fetched, `model.checkpoints: {run: ...}` points at another run's folder, and runs
queue on the host (`--after`, `--queue`)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import orch_cmd, poll, worker_checkout

HERE = Path(__file__).parent


def status(orch, *runs):
    res = orch("status", "--json", *runs)
    assert res.exit_code == 0, res.output
    return {s["run_id"]: s for s in json.loads(res.stdout)}


def wait_state(orch, run_id, states, limit=60.0):
    """The run's status once its state is one of `states`."""

    def check():
        s = status(orch, run_id)[run_id]
        return s if s["state"] in states else None

    check.__doc__ = f"{run_id} reaches {states}"
    return poll(check, limit, every=0.3)


def started(res) -> str:
    assert res.exit_code == 0, res.output
    return res.stdout.split("started ")[1].split()[0]


def remote_run(tmp_path, run_id) -> Path:
    return tmp_path / "remote" / "runs" / run_id


SHELL_BOOKS = {
    "ok": 'command: "echo orch-progress step=3 total=3 loss=0.25 note=fine"\n',
    "fails": 'command: "echo broken; exit 3"\n',
    "slow": 'command: "sleep 4; echo done"\n',
    "trainer": 'command: "sh trainer.sh"\n',
    "files": (
        'command: "mkdir -p {out}/checkpoints/checkpoint-1 {out}/checkpoints/checkpoint-2 && '
        "head -c 3000 /dev/urandom > {out}/checkpoints/checkpoint-1/adapter.bin && "
        "head -c 5000 /dev/urandom > {out}/checkpoints/checkpoint-2/adapter.bin && "
        'echo x > {out}/checkpoints/checkpoint-2/config.json"\n'
        "outputs: [checkpoints/]\n"
    ),
}


def pushing(checkout, script: str):
    """`worker_checkout`'s project with the user's `script` added to push.include."""
    root = next(checkout)
    cfg = root / "orch.yaml"
    cfg.write_text(cfg.read_text().replace("[data/sample]", f"[data/sample, {script}]"))
    yield root
    yield from checkout


TRAINER = """printf '%s\\n' "{'loss': '2.5', 'learning_rate': '5e-05', 'epoch': '0.4'}"
printf ' 40%%|####  | 4/10 [00:01<00:02, 3.1it/s]\\r'
sleep 3
"""


@pytest.fixture
def shell_project(tmp_path, box, sshd, monkeypatch):
    """A project whose playbooks are small shell commands, with host `gpu` on the sshd."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "trainer.sh").write_text(TRAINER)
    checkout = worker_checkout(root, tmp_path, sshd, monkeypatch, SHELL_BOOKS)
    yield from pushing(checkout, "trainer.sh")


def test_exit_status_is_the_state_of_a_command_job(shell_project, orch, tmp_path):
    res = subprocess.run(orch_cmd("run", "ok", "--host", "gpu", "--follow"), capture_output=True)
    assert res.returncode == 0, res.stdout + res.stderr  # exit 0, no results.json: succeeded
    run_id = res.stdout.decode().split("started ")[1].split()[0]
    s = status(orch, run_id)[run_id]
    assert (s["state"], s["done"], s["total"]) == ("succeeded", 3, 3)
    assert s["metrics"] == {"loss": 0.25, "note": "fine"}
    res = subprocess.run(orch_cmd("run", "fails", "--host", "gpu", "--follow"), capture_output=True)
    assert res.returncode == 1
    assert "failed" in res.stdout.decode() and "broken" in res.stdout.decode()
    fetched = orch("fetch", run_id)
    assert f"{run_id}: fetched (succeeded)" in fetched.stdout
    # a results.json it does write is checked like any other
    bad = started(orch("run", "slow", "--host", "gpu"))
    (remote_run(tmp_path, bad) / "results.json").write_text('{"baseline": {"cer": "x"}}')
    wait_state(orch, bad, ("succeeded",))
    out = orch("fetch", bad)
    assert out.exit_code == 1 and "results.json on gpu is invalid" in out.stdout


def test_progress_eta_and_metrics_from_trainer_lines(shell_project, orch):
    run_id = started(orch("run", "trainer", "--host", "gpu"))

    def reported():
        s = status(orch, run_id)[run_id]
        return s if s["done"] else None

    s = poll(reported, 20)
    assert (s["state"], s["done"], s["total"]) == ("running", 4, 10)
    assert s["metrics"] == {"loss": 2.5, "learning_rate": 5e-05, "epoch": 0.4}
    assert s["eta_s"] is not None and s["eta_approximate"]
    table = orch("status", run_id).stdout
    assert "4/10" in table and f"{run_id}: step 4/10: loss=2.5 learning_rate=5e-05" in table
    done = wait_state(orch, run_id, ("succeeded",))
    assert (done["done"], done["total"], done["eta_s"]) == (4, 10, None)  # read from progress.txt


def test_outputs_listed_and_fetched_resumably_within_the_limit(shell_project, orch, tmp_path):
    run_id = started(orch("run", "files", "--host", "gpu"))
    s = wait_state(orch, run_id, ("succeeded",))
    assert s["outputs"] == [
        {"path": "checkpoints/checkpoint-1/adapter.bin", "size": 3000},
        {"path": "checkpoints/checkpoint-2/adapter.bin", "size": 5000},
        {"path": "checkpoints/checkpoint-2/config.json", "size": 2},
    ]
    res = orch("fetch", run_id, "--outputs", "checkpoints/checkpoint-2/*")
    assert res.exit_code == 0, res.output
    assert "2 file(s) fetched" in res.stdout
    local = shell_project / "results" / run_id / "outputs" / "checkpoints"
    remote = remote_run(tmp_path, run_id) / "checkpoints"
    got = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert got == ["checkpoint-2/adapter.bin", "checkpoint-2/config.json"]
    assert (local / "checkpoint-2/adapter.bin").read_bytes() == (
        remote / "checkpoint-2/adapter.bin"
    ).read_bytes()
    # resumable: a complete file is not sent again, a truncated one is
    (local / "checkpoint-2/adapter.bin").write_bytes(b"cut")
    res = orch("fetch", run_id, "--outputs")
    assert "2 file(s) fetched (0.0 MB), 1 already complete" in res.stdout, res.output
    assert not list(local.parent.parent.glob(".outputs-fetch-*"))  # no temporary left
    # over fetch.max_mb: refused, nothing written
    shutil.rmtree(local)
    cfg = shell_project / "orch.yaml"
    cfg.write_text(cfg.read_text() + "fetch: {max_mb: 0.005}\n")
    res = orch("fetch", run_id, "--outputs")
    assert res.exit_code == 1 and "more than fetch.max_mb (0.005 MB)" in res.stderr
    assert not local.exists()


def test_queue_behind_a_busy_host_and_after_a_failed_run(shell_project, orch):
    first = started(orch("run", "slow", "--host", "gpu"))
    refused = orch("run", "ok", "--host", "gpu")
    assert refused.exit_code == 1 and "queue behind it with --queue" in refused.stderr
    queued = started(orch("run", "ok", "--host", "gpu", "--queue"))
    s = status(orch, queued)[queued]
    assert s["state"] == "queued" and s["note"] == f"behind {first}"
    assert wait_state(orch, queued, ("succeeded",))["done"] == 3
    assert status(orch, first)[first]["state"] == "succeeded"  # it ran first, to its end
    failing = started(orch("run", "fails", "--host", "gpu"))
    skipped = started(orch("run", "ok", "--host", "gpu", "--after", failing))
    s = wait_state(orch, skipped, ("skipped",))
    assert s["note"] == f"not started: run {failing} did not succeed"
    assert "queued" not in orch("status", skipped).stdout
    follow = subprocess.run(orch_cmd("logs", skipped), capture_output=True, text=True)
    assert f"orch: skipped: run {failing} did not succeed" in follow.stdout


def test_after_shows_queued_after_and_a_cancelled_run_skips(shell_project, orch):
    first = started(orch("run", "slow", "--host", "gpu"))
    waiting = started(orch("run", "ok", "--host", "gpu", "--after", "latest:slow"))
    s = status(orch, waiting)[waiting]
    assert (s["state"], s["after"]) == ("queued", first)
    assert f"queued (after {first})" in orch("status", waiting).stdout
    assert orch("cancel", first, "--grace", "1").exit_code == 0
    assert wait_state(orch, waiting, ("skipped",))["state"] == "skipped"


def test_checkpoint_references_are_checked(shell_project, orch, tmp_path):
    book = shell_project / "playbooks" / "ev.yaml"
    book.write_text(
        "model: {base: /m, checkpoints: {run: latest:ok}}\ndata: {source: d}\n"
        "methods: {b: {kind: greedy}}\n"
    )
    res = orch("run", "ev", "--host", "gpu")
    assert res.exit_code == 2 and "latest:ok: no run of playbook 'ok'" in res.stderr
    run_id = started(orch("run", "ok", "--host", "gpu"))
    wait_state(orch, run_id, ("succeeded",))
    res = orch("run", "ev", "--host", "local")
    assert res.exit_code == 2
    assert f"model.checkpoints: run {run_id} ran on gpu, not on local" in res.stderr
    shutil.rmtree(remote_run(tmp_path, run_id))  # gone from the host: the launch pre-check says
    res = orch("run", "ev", "--host", "gpu")
    assert res.exit_code == 2
    assert f"model.checkpoints: run {run_id}: no run folder on this host" in res.stderr
    book.write_text(book.read_text().replace("latest:ok}", "latest:ok, path: ../x}"))
    res = orch("run", "ev", "--host", "gpu")
    assert res.exit_code == 2 and "'../x': not inside the run folder" in res.stderr


@pytest.fixture
def lora_project(tmp_path, box, sshd, monkeypatch, tiny_model):
    """A user's project: their training script, a training playbook and an evaluation of its
    checkpoints, with host `gpu` on the sshd."""
    root = tmp_path / "lora"
    root.mkdir()
    shutil.copy(HERE / "train_lora.py", root / "train_lora.py")
    books = {
        "train": (
            f'command: "{{python}} train_lora.py --base {tiny_model}/base --steps 4 '
            '--save-every 2 --out {out}"\noutputs: [checkpoints/]\n'
        ),
        "eval": (
            f"model: {{base: {tiny_model}/base, checkpoints: {{run: latest:train}}}}\n"
            "data: {source: data/sample, n_samples: 2}\n"
            "generation: {batch_size: 2, max_new_tokens: 4, compile: 'off'}\n"
            "methods: {last: {kind: greedy}, ensemble: {kind: ensemble, vote: mbr}}\n"
        ),
    }
    yield from pushing(worker_checkout(root, tmp_path, sshd, monkeypatch, books), "train_lora.py")


def test_tiny_lora_training_then_evaluation_queued_after_it(lora_project, orch, tmp_path):
    """The issue's test: a `command:` job trains a LoRA for a few steps on CPU and ends
    `succeeded` with progress and its outputs; an eval queued `--after` it runs on the
    checkpoints it wrote, named by `model.checkpoints: {run: latest:train}`."""
    train = started(orch("run", "train", "--host", "gpu"))
    evaluation = started(orch("run", "eval", "--host", "gpu", "--after", train))
    assert status(orch, evaluation)[evaluation]["state"] == "queued"
    s = wait_state(orch, train, ("succeeded", "failed"), limit=180)
    assert s["state"] == "succeeded", s
    assert (s["done"], s["total"]) == (4, 4) and s["metrics"]["loss"] > 0
    paths = [o["path"] for o in s["outputs"]]
    for step in (2, 4):
        assert f"checkpoints/checkpoint-{step}/adapter_model.safetensors" in paths
        assert f"checkpoints/checkpoint-{step}/adapter_config.json" in paths
    e = wait_state(orch, evaluation, ("succeeded", "failed", "skipped"), limit=240)
    assert e["state"] == "succeeded", e
    res = orch("fetch", evaluation)
    assert res.exit_code == 0, res.output
    results = json.loads((lora_project / "results" / evaluation / "results.json").read_text())
    written = remote_run(tmp_path, train) / "checkpoints"
    assert results["run"]["model"]["checkpoints"] == [
        str(written / "checkpoint-2"),
        str(written / "checkpoint-4"),
    ]
    assert results["last"]["n"] == 2 and results["ensemble"]["n"] == 2
    res = orch("fetch", train, "--outputs", "checkpoints/checkpoint-4/*")
    assert res.exit_code == 0, res.output
    local = lora_project / "results" / train / "outputs" / "checkpoints" / "checkpoint-4"
    assert (local / "adapter_model.safetensors").read_bytes() == (
        written / "checkpoint-4" / "adapter_model.safetensors"
    ).read_bytes()
    listed = json.loads((lora_project / "results" / train / "run.json").read_text())["outputs"]
    assert [o["path"] for o in listed] == paths
