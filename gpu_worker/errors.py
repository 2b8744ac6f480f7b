"""Error analysis: which edits a method makes, from the same alignment the CER counts.

Contract:
- Both sides are normalised as for the CER (`metrics.normalize`) and aligned with
  `jiwer.process_characters` (the call `metrics.score_pair` counts), so for every line
  substitutions + insertions + deletions == its `char_edits`. An empty reference aligns to
  insertions only (the CER's rule); a failed line is scored as an empty prediction (deletions).
- Each edit is one character pair `(ref, hyp)`; an insertion has ref "", a deletion hyp "".
  `confusions`: the 10 most frequent pairs as `[ref, hyp, count]` (ties: first seen first).
- `classes`: each edit counted once, under the first class (in `CLASSES` order) that either of
  its characters belongs to, judged in its own string:
  `nukta` U+0B3C; `vowel_sign` the Odia matras U+0B3E–U+0B4C and U+0B55–U+0B57; `virama_conjunct`
  the virama U+0B4D and the consonant right after it; `digit` Odia digits U+0B66–U+0B6F and
  ASCII 0–9 (a decimal digit of any script); `other_script` a letter outside `data.script`
  (`preflight.letter_counts`; never for script `none`); `other` everything else.
- `ErrorCounts.to_json()` is the `errors` object of results.json (per method, and per group
  under `groups` when `scoring.group_by` is set).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .contract.checks import NO_SCRIPT
from .metrics import normalize
from .preflight import letter_counts

TOP_CONFUSIONS = 10
CLASSES = ("nukta", "vowel_sign", "virama_conjunct", "digit", "other_script", "other")
NUKTA = 0x0B3C
VIRAMA = 0x0B4D
VOWEL_SIGNS = ((0x0B3E, 0x0B4C), (0x0B55, 0x0B57))
ODIA_DIGITS = (0x0B66, 0x0B6F)


@dataclass
class ErrorCounts:
    """Edits summed over lines: S/I/D, every character pair, and edits per class."""

    substitutions: int = 0
    insertions: int = 0
    deletions: int = 0
    pairs: Counter = field(default_factory=Counter)
    classes: Counter = field(default_factory=Counter)

    @property
    def edits(self) -> int:
        """Total edits: equal to the CER's `char_edits` over the same lines."""
        return self.substitutions + self.insertions + self.deletions

    def add(self, other: ErrorCounts) -> None:
        """Add another set of counts to this one."""
        self.substitutions += other.substitutions
        self.insertions += other.insertions
        self.deletions += other.deletions
        self.pairs.update(other.pairs)
        self.classes.update(other.classes)

    def to_json(self) -> dict:
        """The `errors` object of results.json."""
        return {
            "substitutions": self.substitutions,
            "insertions": self.insertions,
            "deletions": self.deletions,
            "confusions": [[r, h, n] for (r, h), n in self.pairs.most_common(TOP_CONFUSIONS)],
            "classes": {name: self.classes.get(name, 0) for name in CLASSES},
        }


def char_classes(text: str, script: str = NO_SCRIPT) -> list[set[str]]:
    """The classes (see the module docstring) each character of `text` belongs to."""
    out = []
    for i, ch in enumerate(text):
        code, kinds = ord(ch), set()
        if code == NUKTA:
            kinds.add("nukta")
        if any(lo <= code <= hi for lo, hi in VOWEL_SIGNS):
            kinds.add("vowel_sign")
        if code == VIRAMA or (i > 0 and ord(text[i - 1]) == VIRAMA):
            kinds.add("virama_conjunct")
        if ODIA_DIGITS[0] <= code <= ODIA_DIGITS[1] or unicodedata.category(ch) == "Nd":
            kinds.add("digit")
        if script != NO_SCRIPT and letter_counts(ch, script)[0]:
            kinds.add("other_script")
        out.append(kinds)
    return out


def _class_of(*kinds: set[str]) -> str:
    joined = set().union(*kinds)
    return next((name for name in CLASSES if name in joined), "other")


def line_errors(
    reference: str,
    prediction: str,
    form: str = "nfc",
    collapse_whitespace: bool = True,
    script: str = NO_SCRIPT,
) -> ErrorCounts:
    """The edits of one line (normalised as for the CER, aligned as the CER aligns)."""
    import jiwer

    ref = normalize(reference, form, collapse_whitespace)
    hyp = normalize(prediction, form, collapse_whitespace)
    ref_kinds, hyp_kinds = char_classes(ref, script), char_classes(hyp, script)
    counts = ErrorCounts()

    def edit(i: int | None, j: int | None) -> None:
        pair = (ref[i] if i is not None else "", hyp[j] if j is not None else "")
        counts.pairs[pair] += 1
        kinds = [ref_kinds[i]] if i is not None else []
        kinds += [hyp_kinds[j]] if j is not None else []
        counts.classes[_class_of(*kinds)] += 1

    if not ref:
        counts.insertions = len(hyp)
        for j in range(len(hyp)):
            edit(None, j)
        return counts
    for chunk in jiwer.process_characters(ref, hyp).alignments[0]:
        refs = range(chunk.ref_start_idx, chunk.ref_end_idx)
        hyps = range(chunk.hyp_start_idx, chunk.hyp_end_idx)
        if chunk.type == "substitute":
            counts.substitutions += len(refs)
            for i, j in zip(refs, hyps, strict=True):
                edit(i, j)
        elif chunk.type == "delete":
            counts.deletions += len(refs)
            for i in refs:
                edit(i, None)
        elif chunk.type == "insert":
            counts.insertions += len(hyps)
            for j in hyps:
                edit(None, j)
    return counts


def total(lines: Iterable[ErrorCounts]) -> ErrorCounts:
    """The sum of per-line counts."""
    out = ErrorCounts()
    for counts in lines:
        out.add(counts)
    return out
