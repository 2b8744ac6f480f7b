"""The `run` block of results.json: what ran, where, on what code and data, and the
recommendation. Library versions and the GPU name come from `engine.py` (imported only when a
model was loaded); the pushed code's identity from the file `orch push` writes, the worker's
(orch version and content hash) from the file shipped beside this package (`run.worker`); the
host's `hourly_rate` from the run.json orch wrote in the run folder, and with it each method's
`cost_per_1k_lines` (steady-state time per line x price per hour)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from . import stats, summary
from .checkpoints import adapter_identity
from .contract.layout import IDENTITY_FILE, WORKER_FILE
from .contract.schema import cost_per_1k_lines
from .contract.spec import RunSpec
from .data import selection_hash


def run_block(
    spec: RunSpec,
    results: dict,
    engine,
    model: tuple[str | None, list[str]],
    indices: list[int],
    started: float,
    where: tuple[str, Path],
    log: Callable[[str], None] = print,
) -> dict:
    """Provenance of a finished run (`where`: the code root and the output folder)."""
    root, out = where
    data = spec.data
    return {
        "run_id": os.environ.get("ORCH_RUN_ID") or out.name,
        "playbook": spec.name,
        "playbook_sha256": spec.digest,
        "host": socket.gethostname(),
        "device": engine.device if engine else "cpu",
        "gpu": _engine_info(engine, "gpu_name"),
        "versions": _engine_info(engine, "versions") or {},
        "code": code_identity(root, log),
        "worker": worker_identity(),
        "model": {
            "base": model[0],
            "checkpoints": model[1],
            "adapters": adapter_identity(model[1]),
        },
        "data": {
            "source": data.source,
            "split": data.split,
            "n_samples": len(indices),
            "seed": data.seed,
            "indices_sha256": selection_hash(data, indices),
            **({"shard": data.shard, "num_shards": data.num_shards} if data.num_shards > 1 else {}),
        },
        "batch_size": spec.batch_size,
        "max_new_tokens": spec.max_new_tokens,
        "lora": engine.mode if engine else None,
        "compiled": bool(engine and engine.compiled),
        "normalize": spec.normalize,
        "baseline": spec.baseline_method,
        "bootstrap": {"resamples": spec.bootstrap, "seed": stats.DEFAULT_SEED, "confidence": 0.95},
        "recommendation": summary.recommend(results, spec.cer_tolerance, spec.baseline_method),
        "started_at": started,
        "ended_at": time.time(),
        **costs(results, out),
    }


def costs(results: dict, out: Path) -> dict:
    """`hourly_rate` (from the run folder's run.json; null when unknown) and per method
    `cost_per_1k_lines` (null for a method without a steady-state time)."""
    try:
        rate = json.loads((Path(out) / "run.json").read_text(encoding="utf-8")).get("hourly_rate")
    except (OSError, ValueError, AttributeError):
        rate = None
    per = {m: cost_per_1k_lines(results[m].get("time_per_image_s"), rate) for m in results}
    return {
        "hourly_rate": rate if isinstance(rate, (int, float)) else None,
        "cost_per_1k_lines": per,
    }


def _engine_info(engine, name: str):
    """`engine.gpu_name()` or `engine.versions()`; None when no model was loaded."""
    if engine is None:
        return None
    from . import engine as engine_mod

    return getattr(engine_mod, name)()


def code_identity(root: str, log: Callable[[str], None] = print) -> dict | None:
    """The pushed tree's identity (commit, dirty flag, content hash) written by `orch push`;
    None, with a warning naming the file, when it is missing or unreadable."""
    path = Path(root) / IDENTITY_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        log(f"warning: {path}: missing (code not sent by orch push); run.code left empty")
        return None
    except (OSError, ValueError) as exc:
        log(f"warning: {path}: unreadable ({exc}); run.code left empty")
        return None
    if not isinstance(doc, dict):
        log(f"warning: {path}: expected a JSON object; run.code left empty")
        return None
    return doc


def worker_identity() -> dict:
    """This worker's identity as shipped by orch (`{version, content_hash}`), or
    `{"version": "unshipped"}` when the package runs from elsewhere (a checkout, a test)."""
    path = Path(__file__).resolve().parent.parent / WORKER_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": "unshipped", "path": str(path.parent)}
    return doc if isinstance(doc, dict) else {"version": "unshipped", "path": str(path.parent)}
