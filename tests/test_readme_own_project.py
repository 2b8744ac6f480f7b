"""README.md's "Use orch in your own project" section, run as written on the `local` host.

The section's code blocks become one bash script, in order: a `sh` block's lines run as they
are (all but `pip install`: orch is already importable here, through an `orch` on PATH that
runs this checkout), and a block whose first line is a comment naming a file (`# train.py`) is
written to that file. The script starts beside an empty git repository `my-project`."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Use orch in your own project"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
FILE_LINE = re.compile(r"^# ([\w./-]+\.\w+)$")


def section_script(readme: str) -> str:
    """The section's blocks as one bash script (see the module docstring)."""
    start = readme.index(SECTION)
    end = readme.index("\n## ", start + len(SECTION))
    lines = ["set -euo pipefail"]
    for _lang, body in BLOCK.findall(readme[start:end]):
        first = body.splitlines()[0]
        named = FILE_LINE.match(first)
        if named:
            lines += [
                f"cat > {named.group(1)} <<'ORCH_README_EOF'",
                body.rstrip("\n"),
                "ORCH_README_EOF",
            ]
        else:
            lines += [ln for ln in body.splitlines() if not ln.lstrip().startswith("pip install")]
    return "\n".join(lines) + "\n"


def test_readme_section_blocks_are_found():
    script = section_script((REPO / "README.md").read_text(encoding="utf-8"))
    assert "cat > train.py <<'ORCH_README_EOF'" in script
    assert "cat > playbooks/evaluate.yaml <<'ORCH_README_EOF'" in script
    assert "orch run evaluate --host local --after latest:train --follow" in script
    assert "pip install" not in script


def test_readme_own_project_section_runs_as_written(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "orch").write_text(f'#!/bin/sh\nexec {sys.executable} -m orchestrator "$@"\n')
    (bin_dir / "orch").chmod(0o755)
    project = tmp_path / "my-project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    script = section_script((REPO / "README.md").read_text(encoding="utf-8"))
    res = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "orch-progress step=3 total=3 loss=0.333" in out  # the training's log, followed
    runs = {json.loads(p.read_text())["playbook"]: json.loads(p.read_text())
            for p in (project / ".orch" / "runs").glob("*.json")}  # fmt: skip
    train, evaluate = runs["train"], runs["evaluate"]
    assert (train["state"], evaluate["state"]) == ("succeeded", "succeeded")
    assert evaluate["after"] == train["run_id"]
    results = project / "results"
    scores = json.loads((results / evaluate["run_id"] / "outputs" / "scores.json").read_text())
    remote = project / ".orch" / "local" / "runs" / train["run_id"] / "checkpoints"
    assert scores["checkpoints"] == [str(remote / f"checkpoint-{i}") for i in (1, 2, 3)]
    fetched = results / train["run_id"] / "outputs" / "checkpoints"
    assert [p.name for p in fetched.iterdir()] == ["checkpoint-3"]
    assert (fetched / "checkpoint-3" / "adapter_config.json").read_text() == '{"r": 8}\n'
