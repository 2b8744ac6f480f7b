"""`orch init`: make the current git repository an orch project.

Writes `orch.yaml` (the commented starter, `config.STARTER`), `playbooks/example.yaml` (one
commented playbook running a command of the project's own) and the `.gitignore` entries orch
needs (`.orch/`: run records and the `local` host's tree). An existing orch.yaml is an error
unless `force`; an existing example playbook is kept; .gitignore only gains missing lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import CONFIG_NAME, STARTER
from .errors import OrchError

GITIGNORE = (".orch/", "__pycache__/")
EXAMPLE = "playbooks/example.yaml"
EXAMPLE_TEXT = """\
# A playbook: one job orch runs on a host. This one runs a command of your project's own;
# orch pushes every git-tracked file of this repository (plus orch.yaml's push.include) to the
# host and runs the command there, in that copy.
#   orch run example --host local --follow
name: example
# {python}: the host's interpreter (<remote_dir>/venv after `orch setup`, else its python);
# {out}: the run's folder on the host (log.txt, progress, outputs); {playbook}: this file, resolved.
command: "{python} -c \\"import platform; print('hello from', platform.node())\\""
# A training job would be, e.g.:
# command: "{python} train.py --output-dir {out}/checkpoints"
#
# A playbook without `command:` runs orch's worker: it evaluates a model on a dataset with
# several decoding methods and writes results.json. For example:
# model: {base: Qwen/Qwen2.5-VL-3B-Instruct, checkpoints: ./checkpoints}
# data: {source: data/test, n_samples: 200}
# methods:
#   baseline: {kind: greedy}
#   beam_search: {kind: beam, num_beams: 5}
"""


@dataclass
class InitResult:
    """What `orch init` wrote (paths relative to the project) and what it left as it was."""

    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def init_project(root: Path, force: bool = False) -> InitResult:
    """Write orch.yaml, the example playbook and the .gitignore entries under `root`."""
    config = root / CONFIG_NAME
    if config.exists() and not force:
        raise OrchError(f"{config.name} already exists; use --force to overwrite it")
    out = InitResult()
    config.write_text(STARTER, encoding="utf-8")
    out.written.append(CONFIG_NAME)
    example = root / EXAMPLE
    if example.exists():
        out.kept.append(EXAMPLE)
    else:
        example.parent.mkdir(exist_ok=True)
        example.write_text(EXAMPLE_TEXT, encoding="utf-8")
        out.written.append(EXAMPLE)
    _ignore(root / ".gitignore", out)
    return out


def _ignore(path: Path, out: InitResult) -> None:
    """Append the missing GITIGNORE lines to `path`."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    have = {line.strip() for line in text.splitlines()}
    missing = [line for line in GITIGNORE if line not in have and line.rstrip("/") not in have]
    if not missing:
        return
    sep = "" if not text or text.endswith("\n") else "\n"
    path.write_text(text + sep + "\n".join(missing) + "\n", encoding="utf-8")
    out.written.append(".gitignore")
