"""Benchmark the worker's decoding paths side by side on a Qwen2.5-VL-architecture model.

One model (built once into `.orch-cache/bench-SIZE`, reused by later runs), the same images,
every method generating exactly `--tokens` new tokens per row, steady state (one warm-up call
first, its seconds printed apart), for each method and batch size:
- `peft`:  today's engine: peft adapters, `adapter_names` per row (the reference path);
- `eager`: the fast path without compiling: merged weights (one checkpoint) or stacked LoRA
  (ensembles, vision tower once per image), dynamic cache;
- `new`:   the fast path as a big run decodes it: static cache, batch buckets and torch.compile
  when `--compile` says so (`auto`: on CUDA only; on CPU `new` is `eager`, measured once);
- `plain`: plain transformers, no LoRA at all (greedy only), for reference.
Methods: greedy, beam 5, sampling, ensemble of 5 (mbr and logits), combined (beam 5 x 5
checkpoints). Batches `--batches` (images per call); configurations over `--max-rows` rows
(images x checkpoints x beams) are skipped, and peft above `--peft-max-rows` (it is slow).
One set of weights serves both engines (`worker_parts.peft_view`): `--size 3b --device cpu`
loads the 3B model once in bf16 (7.5 GB; `--dtype` overrides) and fits a 24 GB machine.
Beside the table, measured in the same run: the vision tower stock vs batched (`--vision`), the
memory plan (images per call under the budget: CUDA's free memory or `--memory-budget` GB),
token agreement of merged weights with peft's unmerged path under both merge rules
(`--agreement` images) and, with `--compile-cost METHODS`, compile seconds with a cold and a
warm Inductor cache (two fresh processes each; see worker_parts.py).
The floor: the language model's weight bytes read once per decode step over a measured
device-to-device copy rate; `new/floor` is the new figure over the images/s that floor allows.
Usage: python benchmarks/worker.py [--size tiny|3b] [--device auto|cpu|cuda] [--tokens 16]
       [--batches 8,32] [--methods greedy,beam5,...] [--json FILE]
On an H100: python benchmarks/worker.py --size 3b --device cuda (batches 8,32,128, 64 tokens).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import worker_parts as parts  # noqa: E402
from gpu_worker import engine as engine_mod  # noqa: E402
from gpu_worker import tiny  # noqa: E402
from gpu_worker.data import DataSpec, Samples  # noqa: E402
from gpu_worker.ensemble import vote  # noqa: E402
from gpu_worker.fastpath import shapes  # noqa: E402

METHODS = ("greedy", "beam5", "sample", "ensemble5_mbr", "ensemble5_logits", "combined")
ROWS_PER_IMAGE = parts.ROWS_PER_IMAGE


def decode(eng, method: str, images: list, gen: dict) -> list[str]:
    """One batched call of `method` on `images` through the engine's public API."""
    last, n = eng.adapters[-1], len(images)
    if method == "greedy":
        return eng.generate(images, [last] * n, **gen)
    if method == "plain":
        return eng.generate(images, None, **gen)
    if method == "beam5":
        return eng.generate(images, [last] * n, num_beams=5, **gen)
    if method == "sample":
        return eng.generate(images, [last] * n, seed=0, **{**gen, "do_sample": True})
    beams = {"num_beams": 5} if method == "combined" else {}
    logits = method == "ensemble5_logits"
    per_image = eng.generate_ensemble(images, eng.adapters, logits=logits, **gen, **beams)
    return [texts[0] if logits else vote(texts, "mbr") for texts in per_image]


def timed(eng, fn, repeat: int) -> tuple[float, float]:
    """(warm-up seconds, median steady seconds) of `fn()`, GPU synchronised."""
    times = []
    for _ in range(repeat + 1):
        eng.synchronize()
        start = time.perf_counter()
        fn()
        eng.synchronize()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def copy_rate(device: str) -> float:
    """Measured device-to-device copy rate in bytes/s (read + write counted)."""
    n = (1 << 30) if device.startswith("cuda") else (1 << 27)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        dst.copy_(src)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n / best


def weight_bytes(model) -> int:
    """Bytes of the weights one decode step reads: everything but the vision tower."""
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if ".visual." in f".{name}" or p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        total += p.numel() * p.element_size()
    return total


def parse_args():
    """The command line; defaults depend on `--size`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "3b"], default="tiny")
    parser.add_argument("--model", help="model folder, built there if missing "
                        "(default .orch-cache/bench-SIZE: a second run reuses it)")  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tokens", type=int, help="new tokens per row (tiny 16, 3b 64)")
    parser.add_argument("--batches", help="images per call (tiny 8,32; 3b 8,32,128)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeat", type=int, default=2, help="timed calls after the warm-up")
    parser.add_argument("--compile", choices=shapes.COMPILE_SETTINGS, default="auto")
    parser.add_argument("--max-rows", type=int, default=1024)
    parser.add_argument("--peft-max-rows", type=int, default=256, help="slow: skip above")
    parser.add_argument("--peft-repeat", type=int, default=1, help="timed peft calls")
    parser.add_argument("--runner-batch", type=int, default=32, help="runner end to end (0: skip)")
    parser.add_argument("--json", help="write every figure to this file as well")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 for 3b on CPU, else the "
                        "engine's (bf16 on CUDA, float32 on CPU)")  # fmt: skip
    parser.add_argument("--agreement", type=int, default=8, help="images for the merge check")
    parser.add_argument("--vision", help="batches for the vision tower table (default --batches;"
                        " 0: skip)")  # fmt: skip
    parser.add_argument("--memory-budget", type=float, help="GB a call may use (memory plan)")
    parser.add_argument("--compile-cost", default="", help="methods to time cold/warm compiles of")
    args = parser.parse_args()
    args.tokens = args.tokens or (64 if args.size == "3b" else 16)
    cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    if args.dtype == "auto" and args.size == "3b" and cpu:
        args.dtype = "bfloat16"
    batches = args.batches or ("8,32,128" if args.size == "3b" else "8,32")
    args.batches = [int(b) for b in batches.split(",")]
    args.methods = args.methods.split(",")
    args.vision = [int(b) for b in (args.vision or batches).split(",") if int(b)]
    args.compile_cost = [m for m in args.compile_cost.split(",") if m]
    unknown = (set(args.methods) | set(args.compile_cost)) - set(METHODS)
    if unknown:
        parser.error(
            f"--methods: unknown {', '.join(sorted(unknown))}; known: {', '.join(METHODS)}"
        )
    return args


def main() -> None:
    """Build or reuse the model, load both engines, print the table row by row."""
    args = parse_args()
    folder = Path(args.model) if args.model else ROOT / ".orch-cache" / f"bench-{args.size}"
    t0 = time.perf_counter()
    last = folder / "checkpoints" / f"checkpoint-{tiny.CHECKPOINT_STEPS[-1]}"
    if not (last / "adapter_model.safetensors").is_file():  # missing or cut off half-way
        tiny.build(folder, size=args.size)
    base, ckpts = str(folder / "base"), engine_mod.expand_checkpoints(str(folder / "checkpoints"))
    fast = engine_mod.load(base, ckpts, device=args.device, dtype=args.dtype)
    peft = parts.peft_view(fast, ckpts)  # the same weight tensors: one copy of the model
    if args.memory_budget:
        fast.memory_budget = int(args.memory_budget * 1e9)
    device = fast.device
    compiled = shapes.want_compile(args.compile, device, 10**9)
    if compiled:
        shapes.compile_cache(ROOT)
    samples = Samples(DataSpec(source=str(ROOT / "data" / "sample")))
    pool = [samples.image(i) for i in range(len(samples))]
    gen = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens, "do_sample": False}
    floor_step = weight_bytes(fast.model) / copy_rate(device)
    head = {
        "size": args.size, "device": device, "gpu": engine_mod.gpu_name(), "tokens": args.tokens,
        "compiled": compiled, "weight_bytes": weight_bytes(fast.model),
        "floor_step_s": floor_step, "setup_s": time.perf_counter() - t0, "rows": [],
        "dtype": str(next(fast.model.parameters()).dtype).removeprefix("torch."),
    }  # fmt: skip
    print(
        f"{args.size} model on {device} ({head['gpu'] or 'no GPU'}), {head['dtype']}, "
        f"{args.tokens} new tokens/row, compile {'on' if compiled else 'off'}; "
        f"floor {floor_step * 1e3:.3f} ms/step ({head['weight_bytes'] / 1e6:.1f} MB of weights "
        f"per step); setup {head['setup_s']:.0f} s"
    )
    side_tables(args, head, fast, peft, pool, gen)
    print(f"{'method':<18}{'batch':>6}{'peft':>9}{'eager':>9}{'new':>9}{'plain':>9}"
          f"{'floor':>11}{'new/floor':>10}{'new/peft':>9}{'warmup_s':>9}  (images/s)")  # fmt: skip
    for method in args.methods:
        for batch in args.batches:
            row = measure(args, method, batch, pool, gen, fast, peft, compiled)
            row["floor"] = batch / (args.tokens * floor_step)
            head["rows"].append(row)
            print_row(row)
    if args.runner_batch and set(args.methods) & set(RUNNER_METHODS):
        del peft
        head["runner"] = runner_table(args, folder, device, compiled, head["rows"])
    if args.compile_cost:
        head["compile_cost"] = compile_table(args, folder, device)
    if args.json:
        Path(args.json).write_text(json.dumps(head, indent=2))


def side_tables(args, head: dict, fast, peft, pool: list, gen: dict) -> None:
    """The memory plan, the merge agreement and the vision tower, printed and kept in `head`."""
    plan = head["memory"] = parts.memory_table(fast, pool, args.batches, args.methods, args.tokens)
    cap = plan["budget_bytes"]
    print(f"memory plan ({f'{cap / 1e9:.1f} GB a call' if cap else 'no cap'}): "
          + ", ".join(f"{r['method']}@{r['batch']}: {r['rows']} rows x "
                      f"{r['bytes_per_row'] / 1e6:.1f} MB -> {r['calls']} call(s)"
                      for r in plan["rows"]))  # fmt: skip
    if args.agreement:
        images = [pool[i % len(pool)] for i in range(args.agreement)]
        ag = head["merge_agreement"] = parts.merge_agreement(fast, peft, images, gen)
        print(f"merge vs peft unmerged ({ag['dtype']}, greedy, {args.agreement} images): "
              + ", ".join(f"{rule} {ag[rule]['identical']}/{ag[rule]['of']} identical "
                          f"(common prefix {ag[rule]['common_prefix']} chars of ids)"
                          for rule in ("cast_once", "delta_cast", "stacked")))  # fmt: skip
    if args.vision:
        head["vision"] = parts.vision_table(fast, pool, args.vision, max(1, args.repeat))
        for r in head["vision"]:
            print(f"vision tower batch {r['batch']} ({r['patches']} patches): stock "
                  f"{r['stock'] * 1e3:.1f} ms ({r['stock_calls']} attention calls), batched "
                  f"{r['batched'] * 1e3:.1f} ms ({r['batched_calls']}): "
                  f"{r['speedup']:.2f}x")  # fmt: skip


def compile_table(args, folder: Path, device: str) -> list[dict]:
    """Cold and warm compile seconds per method (first batch size), fresh processes."""
    out = []
    print(f"\ncompile cost (fresh process each, batch {args.batches[0]}, {args.tokens} tokens)")
    for method in args.compile_cost:
        r = parts.compile_seconds(folder, device, args.dtype, method, args.batches[0], args.tokens)
        out.append(r)
        print(f"{method:<18} cold {r['cold']['compile_s']:.1f} s (first call "
              f"{r['cold']['first_s']:.1f} s), warm {r['warm']['compile_s']:.1f} s (first call "
              f"{r['warm']['first_s']:.1f} s), steady call {r['warm']['steady_s']:.2f} s",
              flush=True)  # fmt: skip
    return out


RUNNER_METHODS = {
    "greedy": {"kind": "greedy"},
    "beam5": {"kind": "beam", "num_beams": 5},
    "sample": {"kind": "sample"},
    "ensemble5_mbr": {"kind": "ensemble", "vote": "mbr"},
    "ensemble5_logits": {"kind": "ensemble", "vote": "logits"},
    "combined": {"kind": "combined", "num_beams": 5},
}


def runner_table(args, folder: Path, device: str, compiled: bool, rows: list[dict]) -> dict:
    """The worker's runner end to end (4 batches, the first its warm-up) vs the engine figure."""
    import yaml

    from gpu_worker.runner import run

    batch, work = args.runner_batch, Path(tempfile.mkdtemp(prefix="orch-bench-run-"))
    sample = ROOT / "data" / "sample"
    labels = [json.loads(x) for x in (sample / "labels.jsonl").read_text().splitlines() if x]
    with open(work / "labels.jsonl", "w", encoding="utf-8") as f:
        for i in range(4 * batch):
            row = labels[i % len(labels)]
            f.write(json.dumps({"image": str(sample / row["image"]), "text": row["text"]}) + "\n")
    methods = {m: RUNNER_METHODS[m] for m in args.methods if m in RUNNER_METHODS}
    book = {
        "model": {"base": str(folder / "base"), "checkpoints": str(folder / "checkpoints"),
                  "device": device},
        "data": {"source": str(work)},
        "generation": {"batch_size": batch, "max_new_tokens": args.tokens,
                       "compile": "on" if compiled else "off"},
        "methods": methods,
    }  # fmt: skip
    (work / "bench.yaml").write_text(yaml.safe_dump(book))
    results = run(work / "bench.yaml", work / "out", log=lambda m: None)
    engine = {r["method"]: r["new"] for r in rows if r["batch"] == batch}
    print(f"\nrunner end to end, batch {batch}, {4 * batch} images (EOS may end rows early)")
    print(f"{'method':<18}{'runner':>9}{'engine':>9}{'ratio':>8}{'warmup_s':>9}{'wall_s':>8}")
    out = {}
    for name in methods:
        body = results[name]
        eng = engine.get(name)
        ratio = body["images_per_s"] / eng if eng else None
        out[name] = {"runner": body["images_per_s"], "engine": eng, "ratio": ratio,
                     "warmup_s": body["warmup_s"], "wall_s": body["wall_s"]}  # fmt: skip
        cells = f"{eng:>9.2f}{ratio:>8.2f}" if eng else f"{'-':>9}{'-':>8}"
        print(f"{name:<18}{body['images_per_s']:>9.2f}{cells}{body['warmup_s']:>9.1f}"
              f"{body['wall_s']:>8.1f}", flush=True)  # fmt: skip
    return out


def measure(args, method, batch, pool, gen, fast, peft, compiled) -> dict:
    """images/s of every path for one (method, batch); None where skipped."""
    images = [pool[i % len(pool)] for i in range(batch)]
    row = {"method": method, "batch": batch, "peft": None, "eager": None, "new": None,
           "plain": None, "warmup_s": None}  # fmt: skip
    if batch * ROWS_PER_IMAGE[method] > args.max_rows:
        return row

    def rate(eng, name=method, repeat=args.repeat):
        warm, steady = timed(eng, lambda: decode(eng, name, images, gen), repeat)
        return batch / steady, warm

    if batch * ROWS_PER_IMAGE[method] <= args.peft_max_rows:
        parts.use_peft(fast)  # the weights are shared: nothing merged while peft decodes
        row["peft"], _ = rate(peft, repeat=args.peft_repeat)
    fast.static = fast.compiled = False
    row["eager"], row["warmup_s"] = rate(fast)
    if method == "greedy":
        row["plain"], _ = rate(fast, "plain")
    if compiled:
        fast.use_static(compiled=True, batch_size=batch)
        row["new"], row["warmup_s"] = rate(fast)
        fast.static = fast.compiled = False
    else:
        row["new"] = row["eager"]
    return row


def print_row(row: dict) -> None:
    """One table line; `-` for a skipped figure."""

    def cell(value, width=9, fmt=".2f"):
        return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"

    new, peft = row["new"], row["peft"]
    print(
        f"{row['method']:<18}{row['batch']:>6}{cell(peft)}{cell(row['eager'])}{cell(new)}"
        f"{cell(row['plain'])}{cell(row['floor'], 11, '.1f')}"
        f"{cell(new / row['floor'] if new else None, 10, '.3f')}"
        f"{cell(new / peft if new and peft else None)}{cell(row['warmup_s'], 9, '.1f')}",
        flush=True,
    )


if __name__ == "__main__":
    main()
