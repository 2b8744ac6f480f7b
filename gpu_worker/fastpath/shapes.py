"""Fixed shapes for compiled static-cache decoding, and whether compiling pays off.

- `bucket(n, batch_size)`: the smallest of a few batch sizes (powers of two up to `batch_size`,
  and `batch_size` itself) holding n rows; the last, short batch is padded up to it.
- `PAD_TO`: prompt lengths are left-padded to a multiple of this, so the static cache's length
  (prompt + max_new_tokens) takes few values.
- `want_compile(setting, device, rows, kind, cost)`: `on`/`off` as given; `auto` decides per
  method, on CUDA only: compile when the rows it will decode (images x beams x checkpoints:
  `methods.kind_of(m).relative_cost`) times the seconds compiling saves per row of that kind
  (`SAVED_S_PER_ROW`) reach its compile cost: `cost` when measured, else `COMPILE_COST_S`
  (declared, cold cache, 3B shapes on an H100: a first compile of 40-70 s, beams and stacked
  LoRA trace more).
- `compile_cache(root)`: where Inductor keeps compiled kernels, so a later run starts warm.
- `CompileCosts(folder)`: the compile seconds each method kind measured last (first batch less
  a steady one), kept beside that cache in `compile_costs.json` per model shape and device; a
  later run decides with them, so a warm cache (a few seconds) lowers the bar.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..contract.spec import COMPILE_SETTINGS

PAD_TO = 64
# Declared, 3B shapes on an H100, cold Inductor cache: compile seconds, and eager less compiled
# seconds per decoded row (64 tokens). Beam and stacked rows batch better eager, so save less.
COMPILE_COST_S = {"greedy": 40.0, "sample": 40.0, "beam": 60.0, "ensemble": 50.0, "combined": 70.0}
SAVED_S_PER_ROW = {"greedy": 0.05, "sample": 0.05, "beam": 0.02, "ensemble": 0.02, "combined": 0.01}


def buckets(batch_size: int) -> list[int]:
    """The batch sizes decoding may use for a run with this `batch_size`."""
    sizes, size = {batch_size}, 1
    while size < batch_size:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def bucket(n: int, batch_size: int) -> int:
    """The smallest bucket that holds `n` rows (n itself when n exceeds `batch_size`)."""
    return next((b for b in buckets(batch_size) if b >= n), n)


def want_compile(
    setting: str, device: str, rows: float, kind: str = "greedy", cost: float | None = None
) -> bool:
    """Whether a method of `kind` decoding `rows` rows uses static cache + torch.compile."""
    if setting not in COMPILE_SETTINGS:
        raise ValueError(f"generation.compile: expected one of {', '.join(COMPILE_SETTINGS)}")
    if setting != "auto":
        return setting == "on"
    if not device.startswith("cuda") or kind not in SAVED_S_PER_ROW:
        return False
    cost = COMPILE_COST_S[kind] if cost is None else cost
    return rows * SAVED_S_PER_ROW[kind] >= cost


def min_rows(kind: str, cost: float | None = None) -> int:
    """The fewest rows for which `auto` compiles a method of `kind` on CUDA."""
    cost = COMPILE_COST_S[kind] if cost is None else cost
    return int(-(-cost // SAVED_S_PER_ROW[kind]))


class CompileCosts:
    """Measured compile seconds per (model shape, device, method kind), kept in a JSON file."""

    def __init__(self, folder: str | Path, shape: str) -> None:
        self.path, self.shape = Path(folder) / "compile_costs.json", shape

    def _all(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, kind: str) -> float | None:
        """The last measured compile seconds of `kind` for this shape (None: never measured)."""
        value = self._all().get(self.shape, {}).get(kind)
        return float(value) if isinstance(value, int | float) and value >= 0 else None

    def put(self, kind: str, seconds: float) -> None:
        """Remember `seconds` for `kind` (written to a temp name, then renamed)."""
        data = self._all()
        data.setdefault(self.shape, {})[kind] = round(max(0.0, seconds), 2)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)


def model_shape(model, device: str) -> str:
    """A key naming the text model's shape, dtype and the device, for `CompileCosts`."""
    text = getattr(model.config, "text_config", model.config)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return f"{text.num_hidden_layers}x{text.hidden_size}-{dtype}-{device}"


def compile_cache(root: str | Path) -> str:
    """Point Inductor's cache at `<remote_dir>/cache/inductor`, kept between runs on the host.

    `<remote_dir>` is two levels above `$ORCH_RUN_DIR` (`<remote_dir>/runs/<id>`, set by the job
    wrapper); the code tree itself is replaced by every push, so the cache stays out of it. Run by
    hand (no ORCH_RUN_DIR): `<root>/.orch-cache/inductor`. An explicit TORCHINDUCTOR_CACHE_DIR wins.
    """
    run_dir = os.environ.get("ORCH_RUN_DIR")
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        folder = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    elif run_dir:
        folder = Path(run_dir).resolve().parent.parent / "cache" / "inductor"
    else:
        folder = Path(root) / ".orch-cache" / "inductor"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return str(folder)
