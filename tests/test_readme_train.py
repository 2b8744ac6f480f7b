"""README.md's "Train, evaluate, publish" section: its `local` block, run as written.

The block trains the small model for a few steps, evaluates the checkpoints it wrote with a run
queued `--after` it, fetches both (the training's outputs too) and publishes into the project's
README. It runs in a fresh git repository holding the sample data, with `orch` on PATH running
this checkout, and the small model at the path the block names (~/.cache/orch/…) linked to the
session's copy."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SAMPLES, git
from tests.test_readme_own_project import BLOCK

SECTION = "## Train, evaluate, publish"


def local_block(readme: str) -> str:
    """The section's code block that starts `orch run train --host local`."""
    start = readme.index(SECTION)
    end = readme.index("\n## ", start + len(SECTION))
    blocks = [body for _, body in BLOCK.findall(readme[start:end])]
    [block] = [b for b in blocks if b.startswith("orch run train --host local")]
    return block


def test_readme_local_train_evaluate_publish_runs_as_written(tmp_path, tiny_model, isolated_home):
    cache = isolated_home / ".cache" / "orch"
    cache.mkdir(parents=True)
    (cache / "tiny-qwen2.5-vl").symlink_to(tiny_model)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "orch").write_text(f'#!/bin/sh\nexec {sys.executable} -P -m orchestrator "$@"\n')
    (bin_dir / "orch").chmod(0o755)
    project = tmp_path / "project"
    shutil.copytree(SAMPLES, project / "data" / "sample")
    (project / "README.md").write_text("# My OCR\n")
    git(project, "init", "-q")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    subprocess.run(["orch", "init"], cwd=project, env=env, check=True, capture_output=True)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "project")
    script = "set -euo pipefail\n" + local_block((REPO / "README.md").read_text(encoding="utf-8"))
    res = subprocess.run(
        ["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=420
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = {}
    for path in (project / ".orch" / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        runs[record["playbook"]] = record
    train, demo = runs["train"], runs["demo"]
    assert (train["state"], demo["state"]) == ("succeeded", "succeeded")
    assert demo["after"] == train["run_id"]
    results = json.loads((project / "results" / demo["run_id"] / "results.json").read_text())
    remote = project / ".orch" / "local" / "runs" / train["run_id"] / "checkpoints"
    trained = [str(p) for p in sorted(remote.glob("checkpoint-*"))]
    assert [Path(c).name for c in trained] == ["checkpoint-10", "checkpoint-20"]
    assert results["run"]["model"]["checkpoints"] == trained  # its own, not the tiny model's
    assert results["ensemble"]["lora_path"] == "stacked"
    assert results["baseline"]["n"] == 4 and results["run"]["data"]["holdout"]  # held-out lines
    adapter = project / "results" / train["run_id"] / "outputs" / "checkpoints" / "checkpoint-20"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert demo["run_id"] in (project / "README.md").read_text()
    assert "results:" in git(project, "log", "-1", "--format=%s")
