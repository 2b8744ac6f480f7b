"""Time left in a run whose methods cost very different amounts per image.

Each method's remaining images are priced at that method's own measured seconds per image once
it has one. A method not yet timed is priced from its cost relative to greedy decoding — beams x
generate rows per image (an ensemble over k checkpoints decodes k rows; `combined` k x beams) —
times the measured seconds per unit of cost of the methods timed so far (each kind's
`relative_cost`, `gpu_worker/methods.py`). Until every method with
work left has been timed the estimate is approximate (`ETA ~`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Estimate:
    """Seconds left (None until anything has been timed) and whether it is approximate."""

    seconds: float | None
    approximate: bool


@dataclass
class Tracker:
    """Per-method images left, images timed and seconds spent."""

    left: dict[str, int]
    costs: dict[str, float] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, method: str, images: int, seconds: float) -> None:
        """`images` of `method` were decoded in `seconds` (of generation)."""
        self.left[method] = max(0, self.left.get(method, 0) - images)
        if seconds > 0 and images > 0:
            self.images[method] = self.images.get(method, 0) + images
            self.seconds[method] = self.seconds.get(method, 0.0) + seconds

    def estimate(self) -> Estimate:
        """The time left over every method with images left."""
        timed = [m for m in self.images if self.seconds.get(m, 0) > 0]
        work = [m for m, n in self.left.items() if n > 0]
        if not work:
            return Estimate(0.0, False)
        if not timed:
            return Estimate(None, True)
        units = sum(self.images[m] * self.costs.get(m, 1.0) for m in timed)
        per_unit = sum(self.seconds[m] for m in timed) / units
        total = 0.0
        for m in work:
            if m in timed:
                total += self.left[m] * self.seconds[m] / self.images[m]
            else:
                total += self.left[m] * self.costs.get(m, 1.0) * per_unit
        return Estimate(total, any(m not in timed for m in work))
