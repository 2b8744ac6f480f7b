"""Numbers a researcher can defend: bootstrap intervals, paired comparisons, sample size, "best".

Standard library at import time; numpy is imported inside the functions that resample, which
run on the worker and in `python -m gpu_worker score`.

Contract:
- Every statistic is corpus-level: total edits / total reference length over a set of lines.
- The bootstrap resamples LINES with replacement (`resamples` times, numpy's PCG64 seeded with
  `seed`) and recomputes the corpus rate from per-line edit counts and lengths; the 95% interval
  is the 2.5th and 97.5th percentile of the resampled rates. One set of resamples serves every
  column of a matrix, so a method's interval and its paired comparison see the same draws.
- A paired comparison uses the lines both methods scored (same references, so the same lengths):
  Δ = (edits_b - edits_a) / length; its interval is the percentile interval of the resampled Δ,
  and the two-sided p-value is 2 * min(P*(Δ <= 0), P*(Δ >= 0)) with add-one smoothing, capped
  at 1 (identical predictions give Δ = 0 and p = 1; a bootstrap of B resamples cannot show p
  below 2 / (B + 1)).
- Several methods against one baseline: their p-values are Holm–Bonferroni adjusted together
  (`holm`; within each group when comparing per group) and `p_holm` is reported beside the raw
  `p_value`. A comparison is `significant` when its interval excludes 0 AND `p_holm` < 0.05
  (`ALPHA`); with one comparison `p_holm` equals `p_value`.
- Lines needed: the normal approximation n = (z_{1-α/2} + z_{power})² · s² / δ², with s² the
  per-line sample variance of the linearised paired difference (d_i - Δ·L_i) / mean(L) and δ the
  observed |Δ| (or `min_delta` when Δ is 0).
- Identical methods (the same edits on every line): `identical` true, lines needed 0.
- "best" is `contract.schema.best_method` (re-used here, stated once there).
- `Paired`, the p-value, `holm` and `lines_needed` live in `contract/paired.py` (standard
  library, so `orch compare` runs the same test on the laptop); the resampling is numpy here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .contract.paired import (  # noqa: F401 - stated once in the contract, re-exported here
    ALPHA,
    CONFIDENCE,
    DEFAULT_SEED,
    MIN_DELTA,
    POWER,
    Paired,
    holm,
    lines_needed,
    two_sided_p,
)
from .contract.spec import DEFAULT_RESAMPLES

_CHUNK_CELLS = 1_200_000  # resampled line slots per chunk: ~10 MB each array, cache-friendly


def resampled_sums(matrix: Any, resamples: int, seed: int) -> Any:
    """Column sums of `matrix` (lines x columns) over `resamples` bootstrap draws of its lines.

    Returns a (resamples x columns) float array. Each draw picks len(lines) line indices with
    replacement; the counts per line come from one `bincount`, then a matrix product sums the
    columns, so the cost is O(resamples x lines) integer work, never string alignment.
    """
    import numpy as np

    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    out = np.zeros((resamples, m.shape[1]))
    if n == 0 or resamples <= 0:
        return out
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CHUNK_CELLS // n))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        idx += np.arange(b)[:, None] * n
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)
        out[start : start + b] = counts.astype(np.float64) @ m
    return out


def _ratio(num: Any, den: Any) -> Any:
    import numpy as np

    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def percentile_interval(values: Any, confidence: float = CONFIDENCE) -> list[float]:
    """The central `confidence` percentile interval of bootstrap replicates."""
    import numpy as np

    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def rate_interval(
    edits: Any, lengths: Any, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> list[float]:
    """95% bootstrap interval of the corpus rate sum(edits) / sum(lengths)."""
    import numpy as np

    sums = resampled_sums(np.column_stack([edits, lengths]), resamples, seed)
    return percentile_interval(_ratio(sums[:, 0], sums[:, 1]))


def paired_from_replicates(replicates: Any) -> tuple[list[float], float]:
    """(interval, two-sided p-value) from bootstrap replicates of Δ (see the module docstring)."""
    import numpy as np

    below = int(np.count_nonzero(replicates <= 0))
    above = int(np.count_nonzero(replicates >= 0))
    return percentile_interval(replicates), two_sided_p(below, above, len(replicates))


def paired(
    edits_a: Any,
    edits_b: Any,
    lengths: Any,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Paired:
    """Paired bootstrap of Δ corpus rate (b - a) on the same lines."""
    import numpy as np

    a, b = np.asarray(edits_a, dtype=np.float64), np.asarray(edits_b, dtype=np.float64)
    length = np.asarray(lengths, dtype=np.float64)
    sums = resampled_sums(np.column_stack([b - a, length]), resamples, seed)
    return paired_result(b - a, length, _ratio(sums[:, 0], sums[:, 1]))


def paired_result(diffs: Any, lengths: Any, replicates: Any) -> Paired:
    """A Paired from per-line differences, lengths and the bootstrap replicates of Δ."""
    total = float(lengths.sum())
    delta = float(diffs.sum()) / total if total > 0 else 0.0
    ci, p = paired_from_replicates(replicates)
    needed, target = lines_needed(diffs.tolist(), lengths.tolist())
    identical = not bool(diffs.any())
    return Paired(len(diffs), delta, ci, p, needed, target, identical=identical)


def _interval_json(values: Any) -> list[float]:
    return [round(v, 6) for v in percentile_interval(values)]


def method_statistics(
    counts: dict[str, dict[int, tuple[int, int, int, int]]],
    baseline: str | None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, dict]:
    """Intervals and the paired comparison with `baseline`, per method.

    `counts[method][line] = (char_edits, chars, word_edits, words)`; a method with no lines has
    no statistics (its values are None). Returns per method `cer_ci`, `wer_ci` and `vs_baseline`
    (None for the baseline itself and for methods without rates). The lines every scored method
    has are resampled once for all of them, so intervals and comparisons share their draws.
    """
    import numpy as np

    scored = [m for m in counts if counts[m]]
    out: dict[str, dict] = {
        m: {"cer_ci": None, "wer_ci": None, "vs_baseline": None} for m in counts
    }
    if not scored:
        return out
    common = sorted(set.intersection(*(set(counts[m]) for m in scored)))
    ref = counts[scored[0]]
    columns = [[ref[i][1] for i in common], [ref[i][3] for i in common]]
    for m in scored:
        columns += [[counts[m][i][0] for i in common], [counts[m][i][2] for i in common]]
    matrix = np.array(columns, dtype=np.float64).T.reshape(len(common), len(columns))
    sums = resampled_sums(matrix, resamples, seed)
    for k, m in enumerate(scored):
        if len(counts[m]) == len(common):
            cer = _ratio(sums[:, 2 + 2 * k], sums[:, 0])
            wer = _ratio(sums[:, 3 + 2 * k], sums[:, 1])
        else:  # this method has lines the others lack: resample its own lines
            own = np.array(list(counts[m].values()), dtype=np.float64)
            alone = resampled_sums(own, resamples, seed)
            cer, wer = _ratio(alone[:, 0], alone[:, 1]), _ratio(alone[:, 2], alone[:, 3])
        out[m]["cer_ci"], out[m]["wer_ci"] = _interval_json(cer), _interval_json(wer)
    if baseline not in scored:
        return out
    b = scored.index(baseline)
    compared: dict[str, Paired] = {}
    for k, m in enumerate(scored):
        if m == baseline:
            continue
        diffs = matrix[:, 2 + 2 * k] - matrix[:, 2 + 2 * b]
        replicates = _ratio(sums[:, 2 + 2 * k] - sums[:, 2 + 2 * b], sums[:, 0])
        compared[m] = paired_result(diffs, matrix[:, 0], replicates)
    adjusted = holm({m: res.p_value for m, res in compared.items()})
    for m, res in compared.items():
        out[m]["vs_baseline"] = {
            "method": baseline,
            **replace(res, p_holm=adjusted[m]).to_json(),
        }
    return out


def source_comparisons(
    counts: dict[str, dict[int, tuple[int, int, int, int]]],
    sources: dict[str, str],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, dict]:
    """Each derived method against its source (`sources[derived] = source`) on the lines both
    scored: the paired Δ CER (derived - source) as `vs_baseline` gives it, the p-values
    Holm-adjusted over these comparisons together. Methods without lines get none."""
    compared: dict[str, Paired] = {}
    for name, source in sources.items():
        mine, theirs = counts.get(name) or {}, counts.get(source) or {}
        common = sorted(set(mine) & set(theirs))
        if not common:
            continue
        compared[name] = paired(
            [theirs[i][0] for i in common],
            [mine[i][0] for i in common],
            [theirs[i][1] for i in common],
            resamples,
            seed,
        )
    adjusted = holm({m: res.p_value for m, res in compared.items()})
    return {
        m: {"method": sources[m], **replace(res, p_holm=adjusted[m]).to_json()}
        for m, res in compared.items()
    }
