"""Voting among the predictions of several checkpoints (or beams) for one image.

Rules, each `vote(candidates) -> str` over a non-empty list in checkpoint order:
- `mbr` (default): the minimum-Bayes-risk candidate, i.e. the one with the smallest total edit
  distance to all others (the edit-distance medoid); ties go to the earliest candidate.
- `majority`: the most frequent string; ties between equally frequent strings are broken by mbr
  among them.
- `longest`: the longest string (what the users' scripts did; kept for comparison); ties go to
  the earliest candidate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence


def _total_distance(candidate: str, candidates: Sequence[str]) -> int:
    """Sum of Levenshtein distances (code points) from `candidate` to every candidate."""
    from rapidfuzz.distance import Levenshtein  # lazy: the orchestrator imports this module

    return sum(Levenshtein.distance(candidate, other) for other in candidates)


def mbr(candidates: Sequence[str]) -> str:
    """The candidate with the smallest total edit distance to the others."""
    _require(candidates)
    costs = [_total_distance(c, candidates) for c in candidates]
    return candidates[costs.index(min(costs))]


def majority(candidates: Sequence[str]) -> str:
    """The most frequent candidate; ties broken by mbr among the tied ones."""
    _require(candidates)
    counts = Counter(candidates)
    top = max(counts.values())
    tied = [c for c in dict.fromkeys(candidates) if counts[c] == top]
    if len(tied) == 1:
        return tied[0]
    costs = [_total_distance(t, candidates) for t in tied]
    return tied[costs.index(min(costs))]


def longest(candidates: Sequence[str]) -> str:
    """The longest candidate (earliest on ties)."""
    _require(candidates)
    return max(candidates, key=len)


def _require(candidates: Sequence[str]) -> None:
    if not candidates:
        raise ValueError("voting needs at least one candidate")


RULES: dict[str, Callable[[Sequence[str]], str]] = {
    "mbr": mbr,
    "majority": majority,
    "longest": longest,
}


def vote(candidates: Sequence[str], rule: str = "mbr") -> str:
    """Apply the named voting rule; an unknown rule names the known ones."""
    try:
        fn = RULES[rule]
    except KeyError:
        raise ValueError(f"unknown voting rule '{rule}'; known: {', '.join(RULES)}") from None
    return fn(candidates)
