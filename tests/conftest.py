"""Shared fixtures: an isolated HOME, a real sshd on loopback, a git project to push."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from tests.sshd_server import SSHServer


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own HOME (and so ~/.ssh), git identity and tmux server."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    (home / ".gitconfig").write_text(
        "[user]\n  name = Test User\n  email = test@example.com\n[init]\n  defaultBranch = main\n"
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    tmux = home / "tmux"
    tmux.mkdir(mode=0o700)
    monkeypatch.setenv("TMUX_TMPDIR", str(tmux))
    return home


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> SSHServer:
    """One real OpenSSH server for the whole session."""
    with SSHServer(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def box(sshd, isolated_home) -> str:
    """The name `box`: a ~/.ssh/config alias for the session sshd, its key in known_hosts."""
    sshd.install_client(isolated_home, "box")
    return "box"


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` and return its output."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A small git project with worker code and playbooks; the cwd of the test."""
    root = tmp_path / "proj"
    (root / "gpu_worker").mkdir(parents=True)
    (root / "playbooks").mkdir()
    (root / "gpu_worker" / "__init__.py").write_text('"""worker"""\n')
    (root / "gpu_worker" / "engine.py").write_text("VALUE = 1\n")
    (root / "playbooks" / "demo.yaml").write_text("model:\n  base: ./models/base\n")
    (root / "setup.cfg").write_text(
        textwrap.dedent(
            """\
            [metadata]
            name = proj
            [options.extras_require]
            worker =
                pyyaml
            """
        )
    )
    (root / "notes.txt").write_text("notes\n")
    (root / ".gitignore").write_text("*.log\n")
    (root / "orch.yaml").write_text("defaults:\n  host: local\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def orch():
    """Call the CLI in-process: orch("push", "--host", "box") -> click Result."""

    def call(*args: str, input: str | None = None):
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return call


def remote_dir_of(root: Path) -> Path:
    """Where the built-in local host keeps code and runs for project `root`."""
    return root / ".orch" / "local"


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


@pytest.fixture
def gpu(project, box, tmp_path) -> str:
    """orch.yaml host `gpu` reaching the sshd through alias `box`, remote_dir under tmp."""
    remote = tmp_path / "remote"
    (project / "orch.yaml").write_text(
        f"defaults:\n  host: local\nhosts:\n  gpu:\n    host: box\n"
        f"    remote_dir: {remote}\n    timeout: 5\n"
    )
    return "gpu"


REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "sample"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The small Qwen2.5-VL-architecture model with 5 LoRA checkpoints, built once per session."""
    from gpu_worker import tiny

    return tiny.build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def netns_hosts(tmp_path):
    """make(n) -> n `tests.netns.NetnsHost`s (namespace, veth link, sshd); skipped without root.

    Everything they started is killed by PID and their namespaces deleted after the test.
    """
    from tests import netns

    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    made: list = []

    def make(n: int = 2) -> list:
        for _ in range(n):
            made.append(netns.NetnsHost(tmp_path / f"ns{len(made)}", len(made)))
        return made[-n:]

    yield make
    for host in made:
        host.teardown()
