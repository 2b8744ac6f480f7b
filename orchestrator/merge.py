"""Merge a sharded run's fetched shards into one `results/<parent>/`.

The rescoring is the worker's (`gpu_worker/merge.py`: metrics recomputed from the merged
predictions, never averaged); this module only locates the fetched shard folders and runs
`python -m gpu_worker merge` in a child process with this interpreter. The orchestrator process
itself never imports numpy or jiwer: the child needs orch's `worker` extra (jiwer, rapidfuzz,
numpy; no torch), and without it the merge stops with the one line naming what to install.
The child writes `results/<parent>/` atomically (a temp folder, then a rename).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .config import Config
from .errors import OrchError
from .fetch import FetchResult, results_dir
from .shards import ShardedRun, load_parent, shards_dir

MERGE_TIMEOUT_S = 3600


def _worker_env() -> dict[str, str]:
    """The environment for `python -m gpu_worker`: the folder holding this orch's packages first
    on PYTHONPATH, so the child runs the worker that ships with this orchestrator."""
    packages = str(Path(__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": packages + (os.pathsep + rest if rest else "")}


def shard_problems(base: Path, run: ShardedRun) -> tuple[list[str], list[str]]:
    """(shards not fetched yet, shards that did not succeed) among `run`'s fetched folders
    under `base`: a shard merges only when it was fetched with exit code 0 and results.json
    (docs/scaling.md: a failed shard never makes a score look better)."""
    waiting, failed = [], []
    for rid in run.shards:
        folder = base / rid
        if not folder.is_dir():
            waiting.append(rid)
            continue
        try:
            code = (folder / "exit_code").read_text().strip()
        except OSError:
            code = "none"
        if code != "0" or not (folder / "results.json").is_file():
            failed.append(f"{rid} (exit code {code})" if code != "0" else f"{rid} (no results)")
    return waiting, failed


def merge(config: Config, run: ShardedRun) -> Path:
    """Write `results/<parent>/` from the fetched shards; its path."""
    base = results_dir(config)
    dest = base / run.parent
    if dest.exists():
        return dest
    waiting, failed = shard_problems(base, run)
    if failed:
        raise OrchError(
            f"{run.parent}: not merged: shard(s) did not succeed: {', '.join(failed)}; "
            f"`orch run --resume {run.parent} --shard N` runs one again"
        )
    if waiting:
        raise OrchError(f"{run.parent}: shard(s) not fetched: {', '.join(waiting)}")
    cmd = [sys.executable, "-m", "gpu_worker", "merge", "--parent", run.parent]
    cmd += ["--playbook", run.playbook, "--out", str(dest), *(str(base / r) for r in run.shards)]
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, env=_worker_env(), timeout=MERGE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise OrchError(f"{run.parent}: the merge ran past {MERGE_TIMEOUT_S}s") from None
    if res.returncode != 0:
        lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
        why = lines[-1].removeprefix("gpu_worker: error: ") if lines else "no message"
        raise OrchError(f"merging {run.parent} failed: {why}")
    return dest


def merge_fetched(config: Config, run_ids: tuple[str, ...] = ()) -> list[FetchResult]:
    """Merge the named parents (or every parent whose shards are all fetched) not yet merged.

    A named parent that cannot be merged (a shard missing, failed or unfetched) is an error; an
    unnamed one is only reported as waiting.
    """
    named = [p for p in (load_parent(config, r) for r in run_ids) if p is not None]
    if not run_ids:
        folder = shards_dir(config)
        names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        named = [p for p in (load_parent(config, n) for n in names) if p is not None]
    out = []
    for run in named:
        dest = results_dir(config) / run.parent
        if dest.exists():
            if run_ids:
                out.append(FetchResult(run.parent, "already merged", "succeeded", str(dest)))
            continue
        waiting, failed = shard_problems(results_dir(config), run)
        if waiting and not failed and not run_ids:
            continue
        try:
            path = merge(config, run)
            out.append(FetchResult(run.parent, "merged", "succeeded", str(path), run.shards))
        except OrchError as exc:
            out.append(FetchResult(run.parent, "error", "not merged", error=str(exc)))
    return out
