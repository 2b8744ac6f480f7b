"""The remote layout both sides agree on, and the host exit statuses. Standard library only.

On a host, under `<remote_dir>/`:
- `code/`: the pushed project (a symlink swapped per push) with `IDENTITY_FILE` naming it;
- `worker/<hash>/`: the orch worker package the job imports (see orchestrator/worker.py);
- `venv/`: the worker's virtual environment (`orch setup`), optional;
- `runs/<run_id>/`: one folder per run, holding the `RUN_FILES` below.

`CodeIdentity` is what identifies a pushed tree (and, with `kind`, the worker package): git
commit, whether the tree differed from it, and a sha256 of its files.

Exit statuses of orch's own remote scripts (not the job's): `EXIT_MISSING` (a file asked for
is absent), `EXIT_SUBMIT` (sbatch refused the job), `EXIT_BUSY` (the host runs another job, or
another push holds the lock), `EXIT_DONE` (`--resume` of a run that already succeeded),
`EXIT_PRECHECK` (the launch pre-check found a missing model folder or adapter).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

CODE_DIR = "code"
RUNS_DIR = "runs"
WORKER_DIR = "worker"
VENV_DIR = "venv"
IDENTITY_FILE = ".orch-identity.json"  # the pushed tree's identity, written by `orch push`
WORKER_FILE = "orch-worker.json"  # beside the shipped gpu_worker/: version, content_hash

RUN_JSON = "run.json"
PLAYBOOK = "playbook.yaml"
LOG = "log.txt"
PROGRESS = "progress.json"
PREDICTIONS = "predictions.jsonl"
RESULTS = "results.json"
EXIT_CODE = "exit_code"
CANCELLED = "cancelled"
RUN_FILES = (RUN_JSON, PLAYBOOK, LOG, PROGRESS, PREDICTIONS, RESULTS, EXIT_CODE, CANCELLED)

EXIT_MISSING = 44
EXIT_SUBMIT = 64
EXIT_SCHEDULER_DOWN = 65  # squeue/scontrol did not answer: the job's fate is unknown
EXIT_BUSY = 75
EXIT_DONE = 76
EXIT_PRECHECK = 77

RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,120}$")


@dataclass(frozen=True)
class CodeIdentity:
    """Which code a tree holds: git commit, whether it differed from it, and a content hash."""

    commit: str | None
    dirty: bool
    content_hash: str


def local_path(value: object, root: str) -> str | None:
    """A playbook path that names a folder on the host (starts with `.`, `/` or `~`), absolute;
    None for hub names like `Qwen/...`. Relative paths are relative to `root`."""
    if not isinstance(value, str) or not value.startswith((".", "/", "~")):
        return None
    path = os.path.expanduser(value)
    return path if os.path.isabs(path) else os.path.join(root, path)


def model_paths(model: dict) -> list[str]:
    """The local paths (as written: folders or globs) a playbook's `model` section needs on the
    host: a local `base` and every `checkpoints` entry."""
    paths = [model["base"]] if local_path(model.get("base"), "") else []
    ckpts = model.get("checkpoints") or []
    return paths + [c for c in ([ckpts] if isinstance(ckpts, str) else ckpts) if isinstance(c, str)]
