"""Parts of benchmarks/worker.py: one set of weights for both engines, and the side measurements.

- `peft_view(fast, checkpoints)`: peft's reference engine over the SAME weight tensors as the fast
  engine (a meta-device copy of the module tree with the tensors assigned, peft attached to it):
  the 3B model in bf16 is held once (7.5 GB), not twice in float32 (30 GB). The fast engine
  merges in place, so `fast.bank.restore()` must run before the view decodes (`use_peft`).
- `merge_agreement(fast, peft, images, gen)`: greedy token-id agreement between peft's unmerged
  path and merged weights, under both merge rules (`LoraBank.cast_once`: float32 sum cast once,
  or the float32 delta cast first and added in the weights' dtype), and the unmerged stacked
  path (base in the weights' dtype plus the LoRA product in float32, as peft computes it).
- `vision_table(fast, pool, batches, repeat)`: the vision tower's seconds per call (the fastest
  of `repeat` after a warm-up) and attention calls per batch, the stock per-window loop against
  `fastpath.vision`'s one call per layer, same images, same run.
- `memory_table(fast, pool, batches, tokens)`: per method and batch, the rows, bytes per row and
  the images one call takes under the memory budget (`fastpath.memory`).
- `compile_seconds(...)`: the first compiled call less a steady one, in a fresh process with an
  empty Inductor cache (cold), then again with the cache it left (warm).
  `python benchmarks/worker_parts.py compile FOLDER DEVICE DTYPE METHOD BATCH TOKENS` is the child.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gpu_worker import engine as engine_mod  # noqa: E402
from gpu_worker.fastpath import memory, vision  # noqa: E402

ROWS_PER_IMAGE = {"greedy": 1, "beam5": 5, "sample": 1, "ensemble5_mbr": 5,
                  "ensemble5_logits": 5, "combined": 25}  # fmt: skip


def peft_view(fast, checkpoints: list[str]):
    """A peft-path Engine sharing `fast`'s weight tensors (see module doc)."""
    from transformers import AutoModelForImageTextToText

    from gpu_worker.fastpath.adapters import attach_peft, key_renamer, read_checkpoint

    fast.bank.restore()
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(fast.model.config)
    model.load_state_dict(fast.model.state_dict(), assign=True, strict=False)
    for name, buffer in fast.model.named_buffers():  # non-persistent ones (rotary frequencies)
        owner, _, attr = name.rpartition(".")
        model.get_submodule(owner)._buffers[attr] = buffer
    if fast.model.config.tie_word_embeddings:
        model.lm_head.weight = model.get_input_embeddings().weight
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise RuntimeError(f"peft view: {left[0]} was not shared from the fast engine")
    model.generation_config = copy.deepcopy(fast.model.generation_config)
    model.eval()
    rename = key_renamer(model)
    files = [read_checkpoint(c, model, rename) for c in checkpoints]
    peft_model = attach_peft(model, list(checkpoints), list(fast.adapters), files).eval()
    return engine_mod.Engine(
        model=peft_model, processor=fast.processor, device=fast.device,
        adapters=list(fast.adapters), prompt=fast.prompt, prompt_format=fast.prompt_format,
        peft_reason="benchmark: peft over the fast engine's weights",
    )  # fmt: skip


def use_peft(fast) -> None:
    """Before the peft view decodes: the shared weights back to the plain base."""
    fast.bank.restore()


def _common(x: str, y: str) -> int:
    pairs = enumerate(zip(x, y, strict=False))
    return next((i for i, (p, q) in pairs if p != q), min(len(x), len(y)))


def agree(a: list[str], b: list[str]) -> dict:
    """Identical lines and the mean length of the common prefix (characters)."""
    prefix = [_common(x, y) for x, y in zip(a, b, strict=True)]
    same = sum(x == y for x, y in zip(a, b, strict=True))
    return {"identical": same, "of": len(a), "common_prefix": round(statistics.mean(prefix), 1)}


@torch.inference_mode()
def _token_ids(eng, images: list, gen: dict, names: list | None = None) -> list[str]:
    """The new token ids per row, as text (`generate` directly: the random 3B model's ids mostly
    fall outside the test tokenizer and would all decode to empty strings)."""
    batch = eng.inputs(images)
    extra = {"adapter_names": names} if names else {}
    out = eng.model.generate(**batch, **extra, **gen)
    return [" ".join(map(str, row)) for row in out[:, batch["input_ids"].shape[1] :].tolist()]


def merge_agreement(fast, peft, images: list, gen: dict) -> dict:
    """Greedy token ids on the last checkpoint: peft unmerged against merged weights (both merge
    rules) and the unmerged stacked path. `common_prefix` counts characters of the id lists."""
    last, n = fast.adapters[-1], len(images)
    use_peft(fast)
    ref = _token_ids(peft, images, gen, [last] * n)
    out = {"dtype": str(next(fast.model.parameters()).dtype).removeprefix("torch.")}
    rule = fast.bank.cast_once
    try:
        for cast_once in (True, False):
            fast.bank.restore()
            fast.bank.cast_once = cast_once
            fast.bank.merge(last)
            out["cast_once" if cast_once else "delta_cast"] = agree(
                ref, _token_ids(fast, images, gen)
            )
    finally:
        fast.bank.restore()
        fast.bank.cast_once = rule
    with fast.bank.stacked([last]):  # unmerged: stacked LoRA, k = 1
        out["stacked"] = agree(ref, _token_ids(fast, images, gen))
    return out


@torch.inference_mode()
def _tower_seconds(fast, pixels, grid, batched: bool) -> float:
    """One vision-tower call's seconds, stock or batched."""
    vision.install(fast.model) if batched else vision.uninstall(fast.model)
    visual = fast.model.model.visual
    fast.synchronize()
    start = time.perf_counter()
    visual(pixels.to(visual.dtype), grid_thw=grid)
    fast.synchronize()
    return time.perf_counter() - start


def vision_table(fast, pool: list, batches: list[int], repeat: int) -> list[dict]:
    """Seconds per vision-tower call, stock against batched, per batch size."""
    rows = []
    visual = fast.model.model.visual
    for size in batches:
        batch = fast.inputs([pool[i % len(pool)] for i in range(size)])
        pixels, grid = batch["pixel_values"], batch["image_grid_thw"]
        row = {"batch": size, "patches": int(pixels.shape[0])}
        units = visual.window_size // visual.spatial_merge_size // visual.patch_size
        p = vision.plan(grid, visual.spatial_merge_size, units, "cpu")
        full = len(visual.fullatt_block_indexes)
        row["stock_calls"] = p.windows.n * (len(visual.blocks) - full) + p.frames.n * full
        row["batched_calls"] = len(visual.blocks)
        times = {"stock": [], "batched": []}
        for _ in range(repeat + 1):  # alternated, so a busy spell hits both alike
            for name, spent in times.items():
                spent.append(_tower_seconds(fast, pixels, grid, name == "batched"))
        for name, spent in times.items():
            row[name] = min(spent[1:])  # the least disturbed call: CPUs are shared
        vision.install(fast.model)
        row["speedup"] = row["stock"] / row["batched"]
        rows.append(row)
    return rows


def memory_table(fast, pool: list, batches: list[int], methods: list[str], tokens: int) -> dict:
    """Images per call under the engine's memory budget, per method and batch size."""
    cap = memory.budget(fast.device, fast.memory_budget)
    dtype = next(fast.model.parameters()).dtype
    out = {"budget_bytes": cap, "rows": []}
    for size in batches:
        images = [pool[i % len(pool)] for i in range(size)]
        prompt = memory.prompt_tokens(fast, images)
        per_row = memory.bytes_per_row(fast.model.config, prompt, tokens, dtype)
        for method in methods:
            rows = ROWS_PER_IMAGE[method]
            per_call = memory.images_per_call(size, rows, per_row, cap)
            out["rows"].append({"method": method, "batch": size, "rows": size * rows,
                                "prompt_tokens": prompt, "bytes_per_row": per_row,
                                "images_per_call": per_call,
                                "calls": -(-size // per_call)})  # fmt: skip
    return out


def compile_seconds(folder: Path, device: str, dtype: str, method: str, batch: int, tokens: int):
    """(cold, warm) compile seconds of `method`: two fresh processes sharing one new cache."""
    cache = tempfile.mkdtemp(prefix="orch-bench-inductor-")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    out = []
    for _ in ("cold", "warm"):
        cmd = [sys.executable, __file__, "compile", str(folder), device, dtype, method,
               str(batch), str(tokens)]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"compile child failed: {done.stderr.strip().splitlines()[-1:]}")
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"method": method, "batch": batch, "cache": cache, "cold": out[0], "warm": out[1]}


def _compile_child(folder, device, dtype, method, batch, tokens) -> None:
    """Load, switch compile on, time the first call and a steady one; print JSON."""
    from benchmarks.worker import decode
    from gpu_worker.data import DataSpec, Samples

    folder = Path(folder)
    ckpts = engine_mod.expand_checkpoints(str(folder / "checkpoints"))
    eng = engine_mod.load(str(folder / "base"), ckpts, device=device, dtype=dtype)
    samples = Samples(DataSpec(source=str(ROOT / "data" / "sample")))
    images = [samples.image(i % len(samples)) for i in range(int(batch))]
    gen = {"max_new_tokens": int(tokens), "min_new_tokens": int(tokens), "do_sample": False}
    eng.use_static(compiled=True, batch_size=int(batch))
    times = []
    for _ in range(2):
        eng.synchronize()
        start = time.perf_counter()
        decode(eng, method, images, gen)
        eng.synchronize()
        times.append(time.perf_counter() - start)
    print(json.dumps({"first_s": times[0], "steady_s": times[1], "compile_s": times[0] - times[1]}))


if __name__ == "__main__" and sys.argv[1:2] == ["compile"]:
    _compile_child(*sys.argv[2:8])
