"""`rescore`: pick among the beam's n-best with a character n-gram language model.

Contract (settings and defaults: `contract.postprocess.STAGE_SETTINGS["rescore"]`):
- The LM is trained on the training text only (`train_texts`, each line NFC, whitespace
  collapsed), never on the lines being scored. Each line is padded with `order - 1` start
  symbols and one end symbol, so the LM also scores how lines begin and end.
- Smoothing, interpolated down to a uniform distribution over the training characters plus one
  unknown: "kneser_ney" (absolute discount `discount`; the lower orders use continuation counts,
  the number of distinct characters seen before an n-gram) or "witten_bell".
- `log_prob(text)` is the natural-log probability of the whole line under the LM.
- `apply(text, nbest)`: each hypothesis scores `log_prob_hyp + weight * lm.log_prob(hyp)`; the
  best (the earlier one on a tie) is returned. Without an n-best (None or empty) the text comes
  back unchanged. A pipeline passes the n-best to its first stage only: put `rescore` first.
- `counts()`: `rescored` lines, `changed` (the LM's pick is not the beam's first), `no_nbest`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence

from ..contract.postprocess import STAGE_CHOICES, with_defaults
from . import NBest, Stage, register

START, END = "\x02", "\x03"
SMOOTHINGS = STAGE_CHOICES["rescore"]["smoothing"]
_SPACES = re.compile(r"\s+")


def _prepare(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


class CharLM:
    """An interpolated character n-gram LM (see the module docstring)."""

    def __init__(
        self,
        texts: Sequence[str],
        order: int = 5,
        smoothing: str = "kneser_ney",
        discount: float = 0.75,
    ) -> None:
        if order < 1 or smoothing not in SMOOTHINGS or not 0 < discount < 1:
            raise ValueError(
                f"postprocess rescore: order >= 1, smoothing one of {', '.join(SMOOTHINGS)} "
                f"and 0 < discount < 1 (got {order}, {smoothing}, {discount})"
            )
        self.order, self.smoothing, self.discount = order, smoothing, discount
        # counts[k][history][char] for histories of length k (k = 0 .. order - 1)
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(order)]
        chars: set[str] = {END}
        for text in texts:
            line = START * (order - 1) + _prepare(text) + END
            chars.update(line[order - 1 :])
            for i in range(order - 1, len(line)):
                self.counts[order - 1][line[i - order + 1 : i]][line[i]] += 1
        if smoothing == "kneser_ney":  # lower orders: distinct left contexts of each n-gram
            for k in range(order - 1, 0, -1):
                for history, nexts in self.counts[k].items():
                    for char in nexts:
                        self.counts[k - 1][history[1:]][char] += 1
        else:
            for k in range(order - 1, 0, -1):
                for history, nexts in self.counts[k].items():
                    self.counts[k - 1][history[1:]].update(nexts)
        self.totals = [{h: sum(c.values()) for h, c in level.items()} for level in self.counts]
        self.uniform = 1.0 / (len(chars) + 1)

    def prob(self, history: str, char: str) -> float:
        """P(char | the last order-1 characters of history)."""
        p = self.uniform
        for k in range(self.order):
            h = history[len(history) - k :] if k else ""
            nexts = self.counts[k].get(h)
            if not nexts:
                continue
            total, types = self.totals[k][h], len(nexts)
            if self.smoothing == "kneser_ney":
                p = (
                    max(nexts.get(char, 0) - self.discount, 0) / total
                    + (self.discount * types / total) * p
                )
            else:
                p = (nexts.get(char, 0) + types * p) / (total + types)
        return p

    def log_prob(self, text: str) -> float:
        """Natural-log probability of one line, its end included."""
        line = START * (self.order - 1) + _prepare(text) + END
        return sum(
            math.log(self.prob(line[i - self.order + 1 : i], line[i]))
            for i in range(self.order - 1, len(line))
        )


@register("rescore")
class Rescore(Stage):
    """n-best rescoring with a character LM trained on the training text."""

    def __init__(self, options: dict, train_texts: Sequence[str]) -> None:
        super().__init__(with_defaults("rescore", options), train_texts)
        o = self.options
        self.lm = CharLM(train_texts, int(o["order"]), o["smoothing"], float(o["discount"]))
        self.weight = float(o["weight"])
        self.tally = Counter(rescored=0, changed=0, no_nbest=0)

    def apply(self, text: str, nbest: NBest | None = None) -> str:
        """The n-best hypothesis with the best combined score, or `text` without an n-best."""
        if not nbest:
            self.tally["no_nbest"] += 1
            return text
        scores = [lp + self.weight * self.lm.log_prob(hyp) for hyp, lp in nbest]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        self.tally["rescored"] += 1
        self.tally["changed"] += best != 0
        return nbest[best][0]

    def counts(self) -> dict[str, int]:
        """Lines rescored, lines where the pick changed, lines without an n-best."""
        return dict(self.tally)
