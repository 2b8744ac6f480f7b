"""Small helpers shared by the job tests: start a run through the CLI, poll for a condition, the
CLI as a separate process."""

from __future__ import annotations

import sys
import time


def orch_cmd(*args: str) -> list[str]:
    """The orch CLI as a separate process (for what must outlive or race the test)."""
    return [sys.executable, "-m", "orchestrator", *args]


def start_run(orch, host: str, *sets: str, playbook: str = "job") -> str:
    """`orch run PLAYBOOK --host HOST --set …` in-process; the new run's id."""
    args = ["run", playbook, "--host", host]
    for s in sets:
        args += ["--set", s]
    res = orch(*args)
    assert res.exit_code == 0, res.output
    return res.stdout.split("started ")[1].split()[0]


def poll(check, limit: float, every: float = 0.1):
    """Call `check()` until it returns something truthy; fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"not within {limit}s: {check.__doc__ or check}")


def worker_checkout(root, tmp_path, sshd, monkeypatch, playbooks: dict[str, str] | None = None):
    """A git project at `root` holding this repository's worker and sample data (and its
    playbooks, or `playbooks`: name -> YAML text), with host `gpu` on the session sshd; the cwd
    while the test runs. A generator for fixtures (`yield from`); kills the host's tmux after."""
    import shutil
    import subprocess

    from tests.conftest import REPO, git

    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "gpu_worker", root / "gpu_worker", ignore=ignore)
    shutil.copytree(REPO / "data" / "sample", root / "data" / "sample")
    if playbooks is None:
        shutil.copytree(REPO / "playbooks", root / "playbooks")
        for name in ("setup.cfg", "pyproject.toml"):
            shutil.copy(REPO / name, root / name)
    else:
        (root / "playbooks").mkdir()
        for name, text in playbooks.items():
            (root / "playbooks" / f"{name}.yaml").write_text(text)
    (root / "orch.yaml").write_text(
        f"hosts:\n  gpu: {{host: box, remote_dir: {tmp_path / 'remote'}, python: {sys.executable},"
        f" timeout: 10}}\npush: {{include: [data/sample]}}\n"
    )
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "worker")
    monkeypatch.chdir(root)
    yield root
    subprocess.run(
        ["tmux", "kill-server"],
        env={"TMUX_TMPDIR": str(sshd.tmux_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
