"""`clean`: Odia Unicode clean-up of OCR output, rule by rule, each rule unambiguous.

Contract (settings and defaults: `contract.postprocess.STAGE_SETTINGS["clean"]`):
- Nukta: the canonical form is the NFC one, base + U+0B3C: ଡ଼ is U+0B21 U+0B3C and ଢ଼ is U+0B22
  U+0B3C (U+0B5C/U+0B5D are composition exclusions, NFC never produces them). The whole line
  ends in NFC, so two-part vowel signs (ୈ ୋ ୌ) are canonical too, and the CER, which also
  normalises to NFC, sees the same text.
- `joiners`: ZWNJ U+200C and ZWJ U+200D are removed ("drop"), kept ("keep"), or removed unless
  the training text has any ("auto"). Tesseract writes ZWNJ after a word-final virama (ନ୍‌) where
  Odia text normally has none. Zero-width space, BOM, soft hyphen and the dotted circle U+25CC
  (a rendering placeholder) are always removed.
- `digits`: every decimal digit (any script) becomes an Odia digit ("odia") or ASCII ("ascii"),
  or stays ("keep"); "auto" picks the script of most digits in the training text ("keep" when it
  has none).
- `other_scripts`: a character of another Indic block (U+0900–U+0D7F outside Odia's U+0B00–U+0B7F;
  the shared dandas U+0964/U+0965 excepted) is moved to the Odia code point in the same position
  of its block when one is assigned, else dropped ("map", the blocks are laid out in parallel);
  dropped always ("drop"); or kept ("keep").
- `variants`: of letter pairs Odia text writes either way (VA U+0B35 / WA U+0B71: ସ୍ଵ / ସ୍ୱ, which
  Tesseract writes with VA), "auto" keeps the one the training text uses more (nothing changes
  when it has neither), "keep" leaves both.
- `whitespace`: runs of whitespace become one space, the ends are stripped, and a space before a
  combining mark (a vowel sign cannot start a word) is removed.
- `counts()`: `lines` seen, `lines_changed`, `chars_changed` (the characters replaced, removed or
  inserted, from an alignment of input and output).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence

from ..contract.postprocess import with_defaults
from . import NBest, Stage, register

JOINERS = "\u200c\u200d"
ALWAYS_DROP = "\u200b\ufeff\u00ad\u25cc"
ODIA_BLOCK = (0x0B00, 0x0B7F)
INDIC = (0x0900, 0x0D7F)
DANDAS = {0x0964, 0x0965}
ODIA_ZERO = 0x0B66
_SPACES = re.compile(r"\s+")
VARIANTS = (("\u0b35", "\u0b71"),)


def digit_script(texts: Sequence[str]) -> str:
    """ "odia" or "ascii", whichever has more digits in `texts`; "keep" when there are none."""
    odia = sum(ODIA_ZERO <= ord(c) <= ODIA_ZERO + 9 for t in texts for c in t)
    ascii_ = sum("0" <= c <= "9" for t in texts for c in t)
    if odia == ascii_ == 0:
        return "keep"
    return "odia" if odia >= ascii_ else "ascii"


def variant_map(texts: Sequence[str]) -> dict[str, str]:
    """For each variant pair, the letter the training text uses less -> the one it uses more."""
    out = {}
    for a, b in VARIANTS:
        na, nb = sum(t.count(a) for t in texts), sum(t.count(b) for t in texts)
        if na != nb:
            out.update({b: a} if na > nb else {a: b})
    return out


def chars_changed(before: str, after: str) -> int:
    """Characters replaced, removed or inserted between `before` and `after`."""
    ops = difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def _digit(ch: str, target: str) -> str:
    if target == "keep" or unicodedata.category(ch) != "Nd":
        return ch
    value = unicodedata.digit(ch)
    return chr(ODIA_ZERO + value) if target == "odia" else str(value)


def _other_script(ch: str, mode: str) -> str:
    code = ord(ch)
    if mode == "keep" or not INDIC[0] <= code <= INDIC[1] or code in DANDAS:
        return ch
    if ODIA_BLOCK[0] <= code <= ODIA_BLOCK[1]:
        return ch
    if mode == "drop":
        return ""
    mapped = chr(ODIA_BLOCK[0] + (code & 0x7F))
    return mapped if unicodedata.name(mapped, "") else ""


def _no_space_before_marks(text: str) -> str:
    out = []
    for ch in text:
        if out and out[-1] == " " and unicodedata.category(ch) in ("Mn", "Mc"):
            out.pop()
        out.append(ch)
    return "".join(out)


@register("clean")
class Clean(Stage):
    """Odia Unicode clean-up (see the module docstring)."""

    def __init__(self, options: dict, train_texts: Sequence[str]) -> None:
        super().__init__(with_defaults("clean", options), train_texts)
        digits = self.options["digits"]
        self.digits = digit_script(train_texts) if digits == "auto" else digits
        joiners = self.options["joiners"]
        uses = any(j in t for t in train_texts for j in JOINERS)
        self.drop = ALWAYS_DROP + (
            JOINERS if joiners == "drop" or (joiners, uses) == ("auto", False) else ""
        )
        self.variants = variant_map(train_texts) if self.options["variants"] == "auto" else {}
        self._lines = self._changed_lines = self._chars = 0

    def clean(self, text: str) -> str:
        """`text` cleaned by every rule."""
        text = "".join(ch for ch in text if ch not in self.drop)
        text = unicodedata.normalize("NFC", text)
        mode = self.options["other_scripts"]
        text = "".join(_other_script(_digit(ch, self.digits), mode) for ch in text)
        text = "".join(self.variants.get(ch, ch) for ch in text)
        if self.options["whitespace"]:
            text = _no_space_before_marks(_SPACES.sub(" ", text).strip())
        return unicodedata.normalize("NFC", text)

    def apply(self, text: str, nbest: NBest | None = None) -> str:
        """The cleaned text (the n-best is not used)."""
        out = self.clean(text)
        self._lines += 1
        if out != text:
            self._changed_lines += 1
            self._chars += chars_changed(text, out)
        return out

    def counts(self) -> dict[str, int]:
        """Lines seen and changed, characters changed."""
        return {
            "lines": self._lines,
            "lines_changed": self._changed_lines,
            "chars_changed": self._chars,
        }
