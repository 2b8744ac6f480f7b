"""`orch push` over real SSH and locally: incremental, ignore rules, identity, atomic swap."""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu_worker.contract.layout import IDENTITY_FILE
from orchestrator import manifest, sync, worker
from orchestrator.config import load_config
from orchestrator.errors import HostUnreachable
from orchestrator.transport import open_host
from tests.conftest import git
from tests.helpers import orch_cmd
from tests.needs import TESSERACT_MISSING


def remote_tree(remote: Path) -> dict[str, str]:
    code = remote / "code"
    return {
        p.relative_to(code).as_posix(): p.read_bytes().decode("utf-8", "replace")
        for p in code.rglob("*")
        if p.is_file() and p.name != IDENTITY_FILE
    }


def push_json(orch, host: str, *extra: str) -> dict:
    res = orch("push", "--host", host, "--json", *extra)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.parametrize("host", ["gpu", "local"])
def test_incremental_push(project, gpu, tmp_path, orch, host):
    remote = tmp_path / "remote" if host == "gpu" else project / ".orch" / "local"
    first = push_json(orch, host)
    assert sorted(first["sent"]) == [
        ".gitignore",
        "gpu_worker/__init__.py",
        "gpu_worker/engine.py",
        "notes.txt",
        "playbooks/demo.yaml",
        "setup.cfg",
    ]
    assert remote_tree(remote)["gpu_worker/engine.py"] == "VALUE = 1\n"
    assert "orch.yaml" not in remote_tree(remote)  # the laptop's config (host addresses, env:)
    assert not any(p.startswith(".orch/") for p in remote_tree(remote))  # orch's own state
    ident = json.loads((remote / "code" / IDENTITY_FILE).read_text())
    assert ident["commit"] == git(project, "rev-parse", "HEAD").strip() and not ident["dirty"]

    noop = push_json(orch, host)
    assert (noop["sent"], noop["deleted"], noop["bytes_sent"]) == ([], [], 0)

    (project / "gpu_worker" / "engine.py").write_text("VALUE = 2\n")
    (project / "gpu_worker" / "debug.log").write_text("ignored by .gitignore\n")
    (project / "gpu_worker" / "new.py").write_text("NEW = 1\n")
    (project / "playbooks" / "demo.yaml").unlink()
    one = push_json(orch, host)
    assert sorted(one["sent"]) == ["gpu_worker/engine.py", "gpu_worker/new.py"]
    assert one["deleted"] == ["playbooks/demo.yaml"]
    tree = remote_tree(remote)
    assert tree["gpu_worker/engine.py"] == "VALUE = 2\n"
    assert "gpu_worker/debug.log" not in tree and "playbooks/demo.yaml" not in tree
    ident = json.loads((remote / "code" / IDENTITY_FILE).read_text())
    assert ident["dirty"] and ident["content_hash"] == one["identity"]["content_hash"]

    git(project, "add", "-A")
    git(project, "commit", "-qm", "two")
    again = push_json(orch, host)  # same files, new commit: identity only
    assert again["sent"] == [] and again["bytes_sent"] > 0
    ident = json.loads((remote / "code" / IDENTITY_FILE).read_text())
    assert ident["commit"] == git(project, "rev-parse", "HEAD").strip() and not ident["dirty"]
    assert (remote / "code").is_symlink()
    assert len([p for p in (remote / ".trees").iterdir()]) <= sync.KEEP_TREES


def test_orchignore_adds_to_gitignore_and_include_adds_files(project, orch):
    (project / "data").mkdir()
    (project / "data" / "sample.txt").write_text("sample\n")
    (project / ".gitignore").write_text("*.log\ndata/\n")
    (project / "gpu_worker" / "scratch.py").write_text("x\n")
    (project / "gpu_worker" / "run.log").write_text("x\n")
    (project / ".orchignore").write_text("gpu_worker/scratch.py\n")
    (project / "orch.yaml").write_text("push:\n  include: [data]\n")
    files = manifest.list_files(load_config())
    assert "data/sample.txt" in files  # git ignores it, orch.yaml asks for it
    assert "gpu_worker/scratch.py" not in files  # .orchignore
    assert "gpu_worker/run.log" not in files  # .gitignore still applies
    (project / "orch.yaml").write_text("push:\n  include: [nope]\n")
    res = orch("push", "--host", "local")
    assert res.exit_code == 2 and "push.include: 'nope' does not exist" in res.stderr


def test_dry_run_changes_nothing(project, gpu, tmp_path, orch):
    res = orch("push", "--host", gpu, "--dry-run")
    assert res.exit_code == 0, res.output
    assert "would send 6 file(s)" in res.stdout and "  send   gpu_worker/engine.py" in res.stdout
    assert not (tmp_path / "remote" / "code").exists()


def test_cut_off_push_keeps_previous_tree(project, gpu, tmp_path):
    cfg = load_config()
    with open_host(cfg.host(gpu)) as h:
        sync.push(cfg, h)
    before = remote_tree(tmp_path / "remote")
    (project / "gpu_worker" / "big.bin").write_bytes(os.urandom(4 << 20))
    (project / "gpu_worker" / "engine.py").write_text("VALUE = 3\n")

    def cut(done: int, total: int) -> None:
        if done > total // 2:
            raise ConnectionResetError("link cut")

    with open_host(cfg.host(gpu)) as h:
        with pytest.raises(HostUnreachable):
            sync.push(cfg, h, on_progress=cut)
    time.sleep(0.5)
    assert remote_tree(tmp_path / "remote") == before
    with open_host(cfg.host(gpu)) as h:  # and the next push completes
        res = sync.push(cfg, h)
    assert "gpu_worker/big.bin" in res.sent
    assert remote_tree(tmp_path / "remote")["gpu_worker/engine.py"] == "VALUE = 3\n"


def test_watch_pushes_on_change(project, tmp_path):
    log = tmp_path / "watch.log"
    proc = subprocess.Popen(
        orch_cmd("push", "--host", "local", "--watch"),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    target = project / ".orch" / "local" / "code" / "gpu_worker" / "engine.py"
    try:
        deadline = time.monotonic() + 20
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert target.read_text() == "VALUE = 1\n"
        time.sleep(0.5)
        (project / "gpu_worker" / "engine.py").write_text("VALUE = 9\n")
        while target.read_text() != "VALUE = 9\n" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert target.read_text() == "VALUE = 9\n"
        while "sent 1 file(s)" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    out = log.read_text()
    assert "sent 6 file(s)" in out and "sent 1 file(s)" in out
    assert "Traceback" not in out and "Overwritten" not in out


def test_setup_creates_venv_then_is_cheap(project, gpu, tmp_path, orch):
    """The venv gets the `worker` extra of orch's own metadata (the project's setup.cfg names
    only pyyaml: it is not read) and the worker is shipped beside it."""
    # the test's own interpreter, which has torch (the sshd's PATH may find another python3)
    (project / "orch.yaml").write_text(
        (project / "orch.yaml").read_text() + f"    python: {sys.executable}\n"
    )
    res = orch("setup", "--host", gpu)
    assert res.exit_code == 0, res.output
    reqs = worker.requirements()
    assert f"updated ({len(reqs)} requirements)" in res.stdout and "torch" in reqs
    shipped = tmp_path / "remote" / "worker" / worker.identity().folder
    assert json.loads((shipped / "orch-worker.json").read_text()) == worker.identity().to_json()
    assert (shipped / "gpu_worker" / "contract" / "spec.py").is_file()
    venv_py = tmp_path / "remote" / "venv" / "bin" / "python"
    out = subprocess.run(
        [str(venv_py), "-c", "import sys, yaml; print(sys.prefix != sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True"
    start = time.monotonic()
    res = orch("setup", "--host", gpu)
    assert res.exit_code == 0 and "already up to date" in res.stdout
    assert time.monotonic() - start < 3


def test_doctor_reports_each_check(project, gpu, tmp_path, orch):
    text = (
        (project / "orch.yaml").read_text().replace("defaults:\n", "defaults:\n  playbook: demo\n")
    )
    # the test's own interpreter, which has torch (the sshd's PATH may find another python3)
    (project / "orch.yaml").write_text(text + f"    python: {sys.executable}\n")
    res = orch("doctor", "--host", gpu, "--json")
    report = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert res.exit_code == 1  # no venv yet, no model files
    assert report["ssh login"]["status"] == "ok"
    assert report["tmux"]["status"] == "ok" and "tmux" in report["tmux"]["detail"]
    assert report["python"]["status"] == "ok"
    assert report["remote_dir writable"]["status"] == "ok"
    assert report["free disk"]["status"] == "ok"
    assert report["worker venv"]["status"] == "fail"
    assert report["model files"] == {
        "name": "model files",
        "status": "fail",
        "detail": "./models/base (0 found)",
    }
    assert report["torch import"] == {
        "name": "torch import",
        "status": "ok",
        "detail": f"torch {importlib.metadata.version('torch')}",
    }
    assert report["cuda"]["status"] == "fail"  # an SSH host without CUDA cannot run the worker
    if TESSERACT_MISSING is None:  # CI installs it
        assert report["tesseract (ori)"]["status"] == "ok"
        assert report["tesseract (ori)"]["detail"].startswith("tesseract ")
    else:  # a warning, not a failure: only `kind: tesseract` methods need it
        assert report["tesseract (ori)"]["status"] == "warn"
        assert "apt-get install tesseract-ocr" in report["tesseract (ori)"]["detail"]
    (tmp_path / "remote" / "code").mkdir(parents=True)
    (tmp_path / "remote" / "code" / "models" / "base").mkdir(parents=True)
    res = orch("doctor", "--host", gpu)
    assert "./models/base (1 found)" in res.stdout


def test_git_error_is_an_error_not_a_different_file_list(project, orch):
    """Only a folder that really is not a git repository falls back to walking the project."""
    (project / "gpu_worker" / "untracked_but_ignored.log").write_text("x\n")
    (project / ".git" / "index").write_bytes(b"garbage, not an index")
    res = orch("push", "--host", "local", "--dry-run")
    assert res.exit_code == 1
    assert res.stderr.startswith("orch: error: git ls-files failed in ")
    assert "index" in res.stderr and "orch push sends what git would ship" in res.stderr
    shutil.rmtree(project / ".git")  # now it is not a repository: walk, honour .gitignore
    res = orch("push", "--host", "local", "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["sent"] == [
        ".gitignore",
        "gpu_worker/__init__.py",
        "gpu_worker/engine.py",
        "notes.txt",
        "playbooks/demo.yaml",
        "setup.cfg",
    ]
    assert doc["identity"]["commit"] is None and doc["identity"]["dirty"] is True


def test_repository_without_a_commit_pushes_as_dirty(tmp_path, orch, monkeypatch):
    root = tmp_path / "fresh"
    (root / "gpu_worker").mkdir(parents=True)
    (root / "gpu_worker" / "a.py").write_text("A = 1\n")
    git(root, "init", "-q")
    monkeypatch.chdir(root)
    res = orch("push", "--host", "local", "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["sent"] == ["gpu_worker/a.py"] and doc["identity"]["commit"] is None
    assert doc["identity"]["dirty"] is True
