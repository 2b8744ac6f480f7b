"""Scoring OCR output: normalisation, then CER/WER with jiwer, corpus-level and per sample.

Contract:
- `normalize(text, form, collapse_whitespace)`: Unicode normal form (NFC by default, or none) and
  whitespace collapsed to single spaces, stripped. Both sides are normalised the same way.
- CER counts code points after normalisation; WER counts whitespace-separated words.
- The headline rates are corpus-level: total edits / total reference length. The mean of the
  per-sample rates is reported beside them (`cer_mean`, `wer_mean`).
- An empty reference has no length: its per-sample rate is 0.0 when the prediction is empty too,
  else 1.0; its edits (the prediction's length) still count in the corpus totals.
- Rates are fractions (0.42), never percentages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from .contract.spec import NORMAL_FORMS

_SPACE = re.compile(r"\s+")


def normalize(text: str, form: str = "nfc", collapse_whitespace: bool = True) -> str:
    """The text in Unicode normal form `form` (or untouched for `none`), whitespace collapsed."""
    if form not in NORMAL_FORMS:
        raise ValueError(f"unknown normal form '{form}'; known: {', '.join(NORMAL_FORMS)}")
    if form != "none":
        text = unicodedata.normalize(form.upper(), text)
    return _SPACE.sub(" ", text).strip() if collapse_whitespace else text


@dataclass(frozen=True)
class SampleScore:
    """Edit counts of one prediction against its reference (both normalised)."""

    char_edits: int
    chars: int
    word_edits: int
    words: int
    exact: bool

    @property
    def cer(self) -> float:
        """Per-sample character error rate (see the module docstring for empty references)."""
        return rate(self.char_edits, self.chars)

    @property
    def wer(self) -> float:
        """Per-sample word error rate."""
        return rate(self.word_edits, self.words)


def rate(edits: int, length: int) -> float:
    """edits / length; for an empty reference 0.0 when nothing was predicted, else 1.0."""
    if length == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / length


def score_pair(
    reference: str, prediction: str, form: str = "nfc", collapse_whitespace: bool = True
) -> SampleScore:
    """Normalise both sides and count character and word edits with jiwer."""
    import jiwer

    ref = normalize(reference, form, collapse_whitespace)
    hyp = normalize(prediction, form, collapse_whitespace)
    if ref:
        c = jiwer.process_characters(ref, hyp)
        char_edits = c.substitutions + c.deletions + c.insertions
    else:
        char_edits = len(hyp)
    ref_words, hyp_words = ref.split(), hyp.split()
    if ref_words:
        w = jiwer.process_words(ref, hyp if hyp_words else "")
        word_edits = w.substitutions + w.deletions + w.insertions
    else:
        word_edits = len(hyp_words)
    return SampleScore(char_edits, len(ref), word_edits, len(ref_words), ref == hyp)


@dataclass(frozen=True)
class Score:
    """Corpus-level and mean per-sample rates over a set of predictions."""

    cer: float
    wer: float
    cer_mean: float
    wer_mean: float
    exact_match: float
    n: int
    char_edits: int
    chars: int

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def aggregate(samples: Iterable[SampleScore]) -> Score:
    """Corpus-level rates (total edits / total length) and the mean of per-sample rates."""
    items = list(samples)
    n = len(items)
    if n == 0:
        return Score(0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0)
    char_edits, chars = sum(s.char_edits for s in items), sum(s.chars for s in items)
    word_edits, words = sum(s.word_edits for s in items), sum(s.words for s in items)
    return Score(
        cer=rate(char_edits, chars),
        wer=rate(word_edits, words),
        cer_mean=sum(s.cer for s in items) / n,
        wer_mean=sum(s.wer for s in items) / n,
        exact_match=sum(s.exact for s in items) / n,
        n=n,
        char_edits=char_edits,
        chars=chars,
    )


def score_pairs(
    pairs: Iterable[tuple[str, str]], form: str = "nfc", collapse_whitespace: bool = True
) -> Score:
    """Score `(reference, prediction)` pairs."""
    return aggregate(score_pair(r, p, form, collapse_whitespace) for r, p in pairs)
