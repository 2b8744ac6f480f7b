"""Small helpers shared by the job tests: start a run through the CLI, poll for a condition, the
CLI as a separate process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

FAKE_JOB = "{python} gpu_worker/fake_job.py --playbook {playbook} --out {out}"


def orch_cmd(*args: str) -> list[str]:
    """The orch CLI as a separate process (for what must outlive or race the test). `-P`: the
    test project (the cwd) has a `gpu_worker/` of its own, which must not shadow orch's."""
    return [sys.executable, "-P", "-m", "orchestrator", *args]


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


def add_fake_job(project: Path, job: str, name: str = "job", extra: str = "") -> None:
    """Copy tests/fake_job.py into `project` and write playbooks/NAME.yaml running it with the
    `job:` settings `job` (a YAML flow mapping: `--set job.KEY` needs KEY listed), then `extra`."""
    shutil.copy(Path(__file__).parent / "fake_job.py", project / "gpu_worker" / "fake_job.py")
    text = f'command: "{FAKE_JOB}"\njob: {job}\n{extra}'
    (project / "playbooks" / f"{name}.yaml").write_text(text)


def kill_tmux(server) -> None:
    """Stop every tmux session on a test sshd (`server.tmux_dir`): the sshd outlives the test,
    and the next test's hosts must start idle."""
    subprocess.run(
        ["tmux", "kill-server"],
        env={"TMUX_TMPDIR": str(server.tmux_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )


def worker_checkout(root, tmp_path, sshd, monkeypatch, playbooks: dict[str, str] | None = None):
    """A git project at `root` holding this repository's worker and sample data (and its
    playbooks, or `playbooks`: name -> YAML text), with host `gpu` on the session sshd; the cwd
    while the test runs. A generator for fixtures (`yield from`); kills the host's tmux after."""
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
    kill_tmux(sshd)
