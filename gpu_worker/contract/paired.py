"""The paired comparison of two methods on the same lines, in the standard library: shared by
the worker (`stats.py`, which resamples with numpy over whole matrices) and the laptop
(`orch compare`, which resamples here, `paired_bootstrap`).

Contract (the statistics are stated once, in `gpu_worker/stats.py`'s docstring):
- Δ = (edits_b - edits_a) / length over the lines both scored; its interval is the percentile
  interval of the bootstrap replicates of Δ (linear interpolation, as numpy's default), the
  two-sided p = 2 * min(P*(Δ <= 0), P*(Δ >= 0)) with add-one smoothing, capped at 1.
- `identical`: the two methods made the same number of edits on every line; no number of lines
  would show a difference, so none is quoted (`lines_needed` 0) and renderers say "identical".
- `paired_bootstrap` draws lines with `random.Random(seed)`: deterministic for a seed, not the
  same draws as the worker's numpy generator (the figures agree within bootstrap noise).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

DEFAULT_SEED = 20261126  # the bootstrap's seed unless a run says otherwise
CONFIDENCE = 0.95
POWER = 0.80
MIN_DELTA = 0.01
ALPHA = 0.05  # a comparison is significant when its Holm-adjusted p-value is below this


@dataclass(frozen=True)
class Paired:
    """Method b against method a on the same lines: Δ = rate(b) - rate(a)."""

    n: int
    delta: float
    ci: list[float]
    p_value: float
    lines_needed: int
    lines_needed_delta: float
    p_holm: float | None = None  # set over all comparisons of a run (`holm`)
    identical: bool = False  # the same edits on every line

    @property
    def adjusted_p(self) -> float:
        """The Holm-adjusted p-value (the raw one when this is the only comparison)."""
        return self.p_value if self.p_holm is None else self.p_holm

    @property
    def significant(self) -> bool:
        """True when the interval of Δ excludes 0 and the adjusted p-value is below ALPHA."""
        return (self.ci[0] > 0 or self.ci[1] < 0) and self.adjusted_p < ALPHA

    def to_json(self) -> dict:
        """A JSON-ready dict (rounded to 6 decimals)."""
        return {
            "n": self.n,
            "delta_cer": round(self.delta, 6),
            "ci": [round(v, 6) for v in self.ci],
            "p_value": round(self.p_value, 6),
            "p_holm": round(self.adjusted_p, 6),
            "significant": self.significant,
            "lines_needed": self.lines_needed,
            "lines_needed_delta": round(self.lines_needed_delta, 6),
            "identical": self.identical,
        }


def two_sided_p(below: int, above: int, resamples: int) -> float:
    """The two-sided bootstrap p-value from the count of replicates <= 0 and >= 0."""
    return min(1.0, 2 * (min(below, above) + 1) / (resamples + 1))


def percentile_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> list[float]:
    """The central `confidence` percentile interval (linear interpolation between ranks)."""
    ordered = sorted(values)
    if not ordered:
        return [0.0, 0.0]
    tail = (1 - confidence) / 2

    def at(q: float) -> float:
        pos = q * (len(ordered) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return [float(at(tail)), float(at(1 - tail))]


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values of m comparisons (keys kept).

    With the raw p-values sorted ascending p(1) <= … <= p(m), the adjusted
    p(i) = min(1, max over j <= i of (m - j + 1) · p(j)): monotone in the raw order, never below
    the raw value. Ties keep their input order (their adjusted values are equal anyway).
    """
    order = sorted(p_values, key=lambda k: p_values[k])
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        out[key] = running
    return out


def lines_needed(
    diffs: Sequence[float],
    lengths: Sequence[float],
    delta: float | None = None,
    min_delta: float = MIN_DELTA,
    confidence: float = CONFIDENCE,
    power: float = POWER,
) -> tuple[int, float]:
    """(lines, δ): lines needed to detect δ in corpus rate with a paired two-sided test.

    `diffs` are per-line edit differences (b - a), `lengths` the reference lengths. δ is the
    observed Δ unless given; when it is 0, `min_delta`. Identical methods (every diff 0): 0.
    """
    d, length = [float(x) for x in diffs], [float(x) for x in lengths]
    n, total = len(d), sum(length)
    if n < 2 or total <= 0:
        return 0, min_delta
    observed = sum(d) / total
    target = abs(delta if delta is not None else observed) or min_delta
    if not any(d):
        return 0, target
    z = [(x - observed * y) / (total / n) for x, y in zip(d, length, strict=True)]
    mean = sum(z) / n
    var = sum((v - mean) ** 2 for v in z) / (n - 1)
    q = NormalDist().inv_cdf(1 - (1 - confidence) / 2) + NormalDist().inv_cdf(power)
    return max(2, math.ceil(q * q * var / (target * target))), target


def paired_result(
    diffs: Sequence[float], lengths: Sequence[float], replicates: Sequence[float]
) -> Paired:
    """A Paired from per-line differences, lengths and the bootstrap replicates of Δ."""
    total = float(sum(lengths))
    delta = float(sum(diffs)) / total if total > 0 else 0.0
    below = sum(1 for r in replicates if r <= 0)
    above = sum(1 for r in replicates if r >= 0)
    p = two_sided_p(below, above, len(replicates))
    needed, target = lines_needed(diffs, lengths)
    ci = percentile_interval(replicates)
    return Paired(len(diffs), delta, ci, p, needed, target, identical=not any(diffs))


def paired_bootstrap(
    edits_a: Sequence[int],
    edits_b: Sequence[int],
    lengths: Sequence[int],
    resamples: int,
    seed: int,
) -> Paired:
    """Paired bootstrap of Δ corpus rate (b - a) over the same lines, standard library only."""
    diffs = [b - a for a, b in zip(edits_a, edits_b, strict=True)]
    n = len(diffs)
    rng = random.Random(seed)
    replicates = []
    for _ in range(resamples if n else 0):
        picks = rng.choices(range(n), k=n)
        den = sum(lengths[i] for i in picks)
        replicates.append(sum(diffs[i] for i in picks) / den if den > 0 else 0.0)
    return paired_result(diffs, lengths, replicates or [0.0])
