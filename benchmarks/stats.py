"""Benchmark the bootstrap: 145,781 lines (a full test split) x 1,000 resamples.

Cases: `stats.rate_interval` (one method's CER interval: two columns), and
`stats.method_statistics` for four methods (every method's CER and WER interval plus three
paired comparisons with the baseline, from one shared set of resamples). Per-line edit counts
are synthetic (lengths 20..80, ~30% character errors); only the resampling is timed, never
string alignment. Target: under 5 s each on a 2-core machine. Wall and CPU seconds are both
printed, with the load average: on a shared machine the wall time includes waiting for a core.
The result is deterministic for a seed: the script checks two runs agree.
Usage: python benchmarks/stats.py [--lines N] [--resamples B] [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu_worker import stats  # noqa: E402


def _counts(n: int, methods: int):
    import numpy as np

    rng = np.random.default_rng(0)
    chars = rng.integers(20, 81, size=n)
    words = np.maximum(1, chars // 6)
    out = {}
    for k in range(methods):
        p = 0.30 - 0.02 * k
        ce, we = rng.binomial(chars, p), rng.binomial(words, min(1.0, p * 1.6))
        out[f"m{k}"] = dict(
            enumerate(zip(ce.tolist(), chars.tolist(), we.tolist(), words.tolist(), strict=True))
        )
    return chars, out


def _median(fn, repeat: int) -> tuple[float, float, object]:
    """Median wall and CPU (this process) seconds of `fn()`, and its result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> int:
    """Run the cases and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=145_781)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chars, counts = _counts(args.lines, 4)
    edits = [v[0] for v in counts["m0"].values()]
    one, one_cpu, ci = _median(
        lambda: stats.rate_interval(edits, chars, args.resamples, seed=1), args.repeat
    )
    assert ci == stats.rate_interval(edits, chars, args.resamples, seed=1), "not deterministic"
    four, four_cpu, res = _median(
        lambda: stats.method_statistics(counts, "m0", args.resamples, seed=1), args.repeat
    )
    figures = {
        "lines": args.lines,
        "resamples": args.resamples,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "rate_interval_wall_s": round(one, 3),
        "rate_interval_cpu_s": round(one_cpu, 3),
        "method_statistics_4_methods_wall_s": round(four, 3),
        "method_statistics_4_methods_cpu_s": round(four_cpu, 3),
        "cer_ci_m0": ci,
        "vs_baseline_m3": res["m3"]["vs_baseline"],
    }
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
