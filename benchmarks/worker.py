"""Benchmark the worker's decoding on a Qwen2.5-VL-architecture model, seconds per image.

In one run, on the same sample images, every method generating exactly N new tokens:
- greedy batched (`--batch` images per generate) vs one image at a time;
- beam search (5 beams) vs greedy, both batched;
- a 5-checkpoint ensemble as ONE batched generate with peft's `adapter_names` (what the worker
  does), vs switching adapters with `set_adapter` (5 generates), vs reloading the model for each
  checkpoint (what today's scripts do).
`--size tiny` (default; CPU is fine) or `--size 3b` (Qwen2.5-VL-3B's shapes, random weights: for a
GPU). With `--json`, one JSON object with every figure and ratio. X_vs_Y is X's time over Y's.
Usage: python benchmarks/worker.py [--size tiny|3b] [--images 16] [--batch 8] [--tokens 16]
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

from gpu_worker import engine as engine_mod  # noqa: E402
from gpu_worker import tiny  # noqa: E402
from gpu_worker.data import DataSpec, Samples  # noqa: E402


def timed(eng, fn, repeat: int) -> float:
    """Median seconds of `fn()` over `repeat` runs after one warm-up, GPU synchronised."""
    fn()
    times = []
    for _ in range(repeat):
        eng.synchronize()
        start = time.perf_counter()
        fn()
        eng.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--size", choices=["tiny", "3b"], default="tiny")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per image, fixed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix=f"orch-bench-{args.size}-"))
    tiny.build(folder, size=args.size)
    base = str(folder / "base")
    ckpts = engine_mod.expand_checkpoints(str(folder / "checkpoints"))
    eng = engine_mod.load(base, ckpts, device=args.device)
    samples = Samples(DataSpec(source=str(ROOT / "data" / "sample")))
    images = [samples.image(i % len(samples)) for i in range(args.images)]
    gen = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens, "do_sample": False}
    last = eng.adapters[-1]
    n = len(images)

    def batches(size):
        return [images[i : i + size] for i in range(0, n, size)]

    def greedy(size):
        for b in batches(size):
            eng.generate(b, [last] * len(b), **gen)

    def beam5():
        for b in batches(args.batch):
            eng.generate(b, [last] * len(b), num_beams=5, **gen)

    def ensemble_batched():
        for b in batches(args.batch):
            rows = [img for img in b for _ in eng.adapters]
            eng.generate(rows, [a for _ in b for a in eng.adapters], **gen)

    def ensemble_switch():
        for b in batches(args.batch):
            inputs = eng.inputs(b, eng.prompt)
            for name in eng.adapters:
                eng.model.set_adapter(name)
                eng.model.generate(**inputs, **gen)

    def ensemble_reload():
        for path in ckpts:
            one = engine_mod.load(base, [path], device=eng.device)
            for b in batches(args.batch):
                one.generate(b, [one.adapters[0]] * len(b), **gen)
            del one

    per = {
        "greedy_batched": timed(eng, lambda: greedy(args.batch), args.repeat) / n,
        "greedy_single": timed(eng, lambda: greedy(1), args.repeat) / n,
        "beam5": timed(eng, beam5, args.repeat) / n,
        "ensemble5_batched": timed(eng, ensemble_batched, args.repeat) / n,
        "ensemble5_switch": timed(eng, ensemble_switch, args.repeat) / n,
        "ensemble5_reload": timed(eng, ensemble_reload, 1) / n,
    }
    fig = {f"{k}_s_per_image": v for k, v in per.items()}
    fig.update({f"{k}_images_per_s": 1 / v for k, v in per.items()})
    fig.update(
        size=args.size,
        device=eng.device,
        gpu=engine_mod.gpu_name(),
        images=n,
        batch=args.batch,
        new_tokens=args.tokens,
        batched_vs_single=per["greedy_batched"] / per["greedy_single"],
        beam5_vs_greedy=per["beam5"] / per["greedy_batched"],
        ensemble5_vs_greedy=per["ensemble5_batched"] / per["greedy_batched"],
        batched_vs_switch=per["ensemble5_batched"] / per["ensemble5_switch"],
        reload_vs_switch=per["ensemble5_reload"] / per["ensemble5_switch"],
    )
    if args.json:
        print(json.dumps(fig, indent=2))
        return
    print(
        f"{args.size} model on {eng.device} ({fig['gpu'] or 'no GPU'}), {n} images, batch "
        f"{args.batch}, {args.tokens} new tokens each"
    )
    print(f"{'method':<40}{'s/image':>10}{'images/s':>10}")
    for k, v in per.items():
        print(f"{k:<40}{v:>10.4f}{1 / v:>10.2f}")
    for k in (
        "batched_vs_single",
        "beam5_vs_greedy",
        "ensemble5_vs_greedy",
        "batched_vs_switch",
        "reload_vs_switch",
    ):
        print(f"{k:<40}{fig[k]:>10.2f}")


if __name__ == "__main__":
    main()
