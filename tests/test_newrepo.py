"""orch as a new user meets it: `pip install` of a wheel built from this checkout (not editable)
into a fresh venv, then a brand-new git repository with no gpu_worker/ of its own, and the whole
loop (init, setup, run, status, fetch, publish --no-hub) on a loopback SSH host and on the Slurm
test cluster, with a command playbook of the user's own and a worker playbook on the tiny model.

The worker reaches the hosts from the installed orch: its identity in results.json is the
installed wheel's (its version, not "source" or "unshipped"), and the project's own files are
the job's working directory."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLES, git
from tests.helpers import kill_tmux
from tests.slurm_cluster import slurm_cluster, slurm_login  # noqa: F401

EVALUATE = """\
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
a = p.parse_args()
labels = open("data/sample/labels.jsonl", encoding="utf-8").read().splitlines()
body = {"cer": 0.25, "wer": 0.5, "exact_match": 0.0, "n": len(labels), "failures": 0,
        "time_per_image_s": 0.01, "images_per_s": 100.0}
doc = {"mine": body, "run": {"run_id": os.environ["ORCH_RUN_ID"], "cwd": os.getcwd()}}
tmp = os.path.join(a.out, "results.json.tmp")
json.dump(doc, open(tmp, "w"))
os.replace(tmp, os.path.join(a.out, "results.json"))
print("evaluated", len(labels), "lines")
"""
MINE = 'name: mine\ncommand: "{python} evaluate.py --out {out}"\n'
TINYEVAL = """name: tinyeval
model: {{tiny: {tiny}}}
data: {{source: data/sample, n_samples: 3}}
generation: {{batch_size: 3, max_new_tokens: 4}}
methods:
  greedy: {{kind: greedy}}
"""


@pytest.fixture(scope="session")
def installed_orch(tmp_path_factory) -> Path:
    """The `bin/` of a fresh venv (system site-packages: torch and the rest come from there)
    holding orch installed from a wheel built from this checkout's files, once per session."""
    base = tmp_path_factory.mktemp("orch-install")
    src = base / "src"
    listed = git(REPO, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for rel in filter(None, listed):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    env = clean_env()
    pip = ["-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [sys.executable, *pip, "wheel", "--no-deps", "--no-build-isolation", "-w", base, src],
        check=True,
        env=env,
        cwd=base,
    )
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    wheel = next(base.glob("orch-*.whl"))
    subprocess.run(
        [venv / "bin" / "python", *pip, "install", "--no-deps", "--no-index", wheel],
        check=True,
        env=env,
    )
    return venv / "bin"


def clean_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH: the installed orch must be the one run."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def new_repo(root: Path, tiny: Path) -> Path:
    """A user's repository: their script, their data, their playbooks; no orch code at all."""
    (root / "data").mkdir(parents=True)
    shutil.copytree(SAMPLES, root / "data" / "sample")
    (root / "evaluate.py").write_text(EVALUATE)
    (root / "README.md").write_text("# My OCR project\n")
    git(root, "init", "-q")
    return root


def orch_in(bin_dir: Path, root: Path):
    """Run the installed `orch` in `root`; the CompletedProcess."""

    def call(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(
            [bin_dir / "orch", *args],
            cwd=root,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return call


def wait_done(orch, run_id: str, limit: float = 240) -> dict:
    """`orch status RUN --json` until the run has finished; its status."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        res = orch("status", run_id, "--json")
        rows = [r for r in json.loads(res.stdout or "[]") if r["run_id"] == run_id]
        if rows and rows[0]["state"] in ("succeeded", "failed", "lost", "cancelled"):
            return rows[0]
        time.sleep(0.5)
    raise AssertionError(f"{run_id} did not finish within {limit}s")


def started(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.split("started ")[1].split()[0].rstrip(":")


@pytest.fixture(params=["ssh", "slurm"])
def user_host(request, tmp_path, isolated_home, tiny_model):
    """(repo, host name) with host `gpu` on the loopback sshd or on the Slurm cluster's login."""
    remote = tmp_path / "remote"
    if request.param == "ssh":
        server = request.getfixturevalue("sshd")
        server.install_client(isolated_home, "box")
        host = f"  gpu: {{host: box, remote_dir: {remote}, python: {sys.executable}, timeout: 10}}"
    else:
        server = request.getfixturevalue("slurm_login")
        server.install_client(isolated_home, "login")
        host = (
            f"  gpu:\n    host: login\n    backend: slurm\n    remote_dir: {remote}\n"
            f"    python: {sys.executable}\n    timeout: 10\n"
            "    slurm: {partition: debug, time: '00:10:00'}"
        )
    yield new_repo(tmp_path / "mine", tiny_model), host, request.param
    if request.param == "ssh":
        kill_tmux(server)


def test_new_repository_whole_loop(installed_orch, user_host, tiny_model, tmp_path):
    root, host, kind = user_host
    orch = orch_in(installed_orch, root)
    res = orch("init")
    assert res.returncode == 0, res.stderr
    assert "wrote orch.yaml" in res.stdout and "wrote playbooks/example.yaml" in res.stdout
    assert ".orch/" in (root / ".gitignore").read_text().splitlines()
    (root / "orch.yaml").write_text(f"defaults:\n  host: gpu\nhosts:\n{host}\n")
    (root / "playbooks" / "mine.yaml").write_text(MINE)
    (root / "playbooks" / "tinyeval.yaml").write_text(TINYEVAL.format(tiny=tiny_model))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "my project")
    assert not (root / "gpu_worker").exists()

    if kind == "ssh":  # on Slurm the worker runs without `orch setup`: the host's python has it
        res = orch("setup", "--host", "gpu", timeout=400)
        assert res.returncode == 0, res.stdout + res.stderr
        assert (tmp_path / "remote" / "venv" / "bin" / "python").exists()
    runs = []
    for playbook in ("mine", "tinyeval"):  # one after the other: a busy host refuses a second
        runs.append(started(orch("run", playbook)))
        state = wait_done(orch, runs[-1])
        assert state["state"] == "succeeded", state
    mine, tiny = runs
    res = orch("fetch")
    assert res.returncode == 0, res.stdout + res.stderr

    ident = json.loads(
        subprocess.run(
            [installed_orch / "python", "-c", IDENTITY],
            capture_output=True,
            text=True,
            check=True,
            env=clean_env(),
        ).stdout
    )
    assert ident["version"] not in ("source", "unshipped")
    head = git(root, "rev-parse", "HEAD").strip()
    ours = json.loads((root / "results" / mine / "results.json").read_text())
    assert ours["mine"]["n"] == len((SAMPLES / "labels.jsonl").read_text().splitlines())
    code = Path(ours["run"]["cwd"])  # the job ran in the pushed copy of the project
    assert (code / "evaluate.py").read_text() == EVALUATE
    assert (code / "playbooks" / "mine.yaml").is_file() and not (code / "gpu_worker").exists()
    worker_run = json.loads((root / "results" / tiny / "results.json").read_text())
    assert worker_run["greedy"]["n"] == 3
    assert worker_run["run"]["worker"] == ident  # the installed orch's worker, shipped
    assert worker_run["run"]["code"]["commit"] == head and not worker_run["run"]["code"]["dirty"]

    res = orch("publish", "--no-hub")
    assert res.returncode == 0, res.stdout + res.stderr
    readme = (root / "README.md").read_text()
    assert "orch:results:start" in readme and "greedy" in readme and "mine" in readme


IDENTITY = (
    "import json; from orchestrator import worker; print(json.dumps(worker.identity().to_json()))"
)
