"""`lexicon`: replace a word that is not in the lexicon by the one lexicon word close to it.

Contract (settings and defaults: `contract.postprocess.STAGE_SETTINGS["lexicon"]`):
- The lexicon is the training text's words occurring at least `min_count` times, plus every word
  of the `words` file when one is named (UTF-8, words separated by whitespace). Words are NFC and
  stripped of surrounding punctuation; a token with a digit or a non-letter inside is no word.
- Distances are optimal-string-alignment edit distances over code points (insert, delete,
  substitute, swap two neighbours). A word's budget is
  max(1, min(max_edits, floor(max_edit_ratio * len(word)))).
- Candidates come from a symspell-style deletion index: every lexicon word is stored under each
  string made from it by up to `max_edits` deletions; a word's own deletions (within its budget)
  find every lexicon word within that distance. Their true distance is then checked.
- Inflections (`guard_inflections`): Odia adds case and number endings to a stem (ଘର, ଘରେ,
  ଘରକୁ), so a correct word is often missing from a small lexicon while a sibling form is in it,
  one or two edits away. The endings are learnt from the lexicon itself: an ending of up to
  `MAX_SUFFIX` code points that turns one lexicon word into another at least twice is a suffix.
  A word that is a stem plus a suffix (or none), whose stem takes some suffix to a lexicon word
  (or is one), is taken as a valid inflected form and left alone.
- A word in the lexicon, shorter than `min_length`, or not a word is left alone. Otherwise it is
  replaced only when exactly one lexicon word has the smallest distance within the budget; with
  `frequency_tie_break`, a tie goes to the strictly most frequent of the tied words. Anything
  else (no candidate, an unbroken tie) leaves the word unchanged.
- Language-model check (`min_lm_gain`, null to skip): a replacement is made only when a
  character 5-gram LM (`charlm.CharLM`, trained on the same training text) finds the line with
  it more probable than the line without it by at least `min_lm_gain` nats per code point of the
  replaced word. OCR damage makes rare character sequences; a valid word the lexicon lacks does
  not, and is left alone.
- Punctuation around a word and the spacing of the line are kept.
- `counts()`: `words` checked, `unknown` (not in the lexicon), `changed`, `ambiguous` (unknown
  words left alone because of a tie), `inflected` (unknown words left alone as inflected forms),
  `low_gain` (replacements the LM check refused).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path

from ..contract.postprocess import with_defaults
from . import NBest, Stage, register
from .charlm import CharLM

_TOKENS = re.compile(r"(\s+)")
MAX_SUFFIX = 4
MIN_STEM = 2


def split_word(token: str) -> tuple[str, str, str]:
    """(leading punctuation, core, trailing punctuation) of one whitespace-free token."""
    start, end = 0, len(token)
    while start < end and unicodedata.category(token[start])[0] not in "LM":
        start += 1
    while end > start and unicodedata.category(token[end - 1])[0] not in "LM":
        end -= 1
    return token[:start], token[start:end], token[end:]


def is_word(core: str) -> bool:
    """True when every character is a letter or a combining mark (no digits, no symbols)."""
    return bool(core) and all(unicodedata.category(c)[0] in "LM" for c in core)


def words_of(texts: Iterable[str]) -> Counter:
    """How often each word occurs in `texts` (NFC, punctuation stripped)."""
    counts: Counter = Counter()
    for text in texts:
        for token in unicodedata.normalize("NFC", text).split():
            core = split_word(token)[1]
            if is_word(core):
                counts[core] += 1
    return counts


def deletions(word: str, edits: int) -> set[str]:
    """Every string made from `word` by deleting up to `edits` characters (the word included)."""
    out = {word}
    for k in range(1, min(edits, len(word)) + 1):
        for drop in combinations(range(len(word)), k):
            out.add("".join(c for i, c in enumerate(word) if i not in drop))
    return out


def distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Levenshtein plus swaps of neighbours)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[len(b)]


class Index:
    """A symspell-style deletion index over a lexicon of word -> frequency."""

    def __init__(self, lexicon: Counter, max_edits: int) -> None:
        self.lexicon, self.max_edits = lexicon, max_edits
        self.keys: dict[str, set[str]] = {}
        for word in lexicon:
            for key in deletions(word, max_edits):
                self.keys.setdefault(key, set()).add(word)

    def nearest(self, word: str, budget: int) -> tuple[int, list[str]]:
        """(distance, words): the lexicon words at the smallest distance <= budget."""
        found: dict[str, int] = {}
        for key in deletions(word, min(budget, self.max_edits)):
            for cand in self.keys.get(key, ()):
                if cand not in found and abs(len(cand) - len(word)) <= budget:
                    found[cand] = distance(word, cand)
        best = min((d for d in found.values() if d <= budget), default=None)
        if best is None:
            return budget + 1, []
        return best, sorted(w for w, d in found.items() if d == best)


def suffixes(lexicon: Iterable[str], min_pairs: int = 2) -> set[str]:
    """Endings that turn one lexicon word into another at least `min_pairs` times."""
    words, seen = set(lexicon), Counter()
    for word in words:
        for k in range(1, MAX_SUFFIX + 1):
            if len(word) - k >= MIN_STEM and word[:-k] in words:
                seen[word[-k:]] += 1
    return {s for s, n in seen.items() if n >= min_pairs}


def inflected(word: str, lexicon: Counter, endings: set[str]) -> bool:
    """True when `word` is a stem + known ending, and the stem's family is in the lexicon."""
    forms = {"", *endings}
    for k in range(0, MAX_SUFFIX + 1):
        stem, end = (word[:-k], word[-k:]) if k else (word, "")
        if len(stem) < MIN_STEM or end not in forms:
            continue
        if any(stem + other in lexicon for other in forms):
            return True
    return False


def read_words(path: str) -> Counter:
    """The words of a word-list file, each counted once; ValueError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"postprocess lexicon.words: cannot read {path}: {exc}") from exc
    return Counter(set(words_of(text.splitlines())))


@register("lexicon")
class Lexicon(Stage):
    """Lexicon correction through a deletion index (see the module docstring)."""

    def __init__(self, options: dict, train_texts: Sequence[str]) -> None:
        super().__init__(with_defaults("lexicon", options), train_texts)
        o = self.options
        counts = words_of(train_texts)
        lexicon = Counter({w: n for w, n in counts.items() if n >= o["min_count"]})
        if o["words"]:
            for word, n in read_words(o["words"]).items():
                lexicon[word] += n
        self.index = Index(lexicon, int(o["max_edits"]))
        self.endings = suffixes(lexicon) if o["guard_inflections"] else set()
        gain = o["min_lm_gain"]
        self.min_gain = None if gain is None else float(gain)
        self.lm = CharLM(train_texts) if self.min_gain is not None else None
        self.tally = Counter(words=0, unknown=0, changed=0, ambiguous=0, inflected=0, low_gain=0)

    def budget(self, word: str) -> int:
        """The edit budget of `word`."""
        o = self.options
        return max(1, min(int(o["max_edits"]), math.floor(o["max_edit_ratio"] * len(word))))

    def candidate(self, word: str) -> str:
        """The lexicon's replacement of one word (itself when it stays)."""
        self.tally["words"] += 1
        if word in self.index.lexicon or len(word) < self.options["min_length"]:
            return word
        self.tally["unknown"] += 1
        if self.endings and inflected(word, self.index.lexicon, self.endings):
            self.tally["inflected"] += 1
            return word
        _, best = self.index.nearest(word, self.budget(word))
        if len(best) > 1 and self.options["frequency_tie_break"]:
            freq = sorted(((self.index.lexicon[w], w) for w in best), reverse=True)
            best = [freq[0][1]] if freq[0][0] > freq[1][0] else best
        if len(best) != 1:
            self.tally["ambiguous"] += len(best) > 1
            return word
        return best[0]

    def accept(self, parts: list[str], i: int, new: str, old: str) -> bool:
        """Whether the LM check lets `parts[i]` become `new` (replacing the word `old`)."""
        if self.lm is None or self.min_gain is None:
            return True
        before = self.lm.log_prob("".join(parts))
        after = self.lm.log_prob("".join([*parts[:i], new, *parts[i + 1 :]]))
        return after - before >= self.min_gain * len(old)

    def apply(self, text: str, nbest: NBest | None = None) -> str:
        """`text` with its unknown words corrected (the n-best is not used)."""
        parts = _TOKENS.split(unicodedata.normalize("NFC", text))
        for i, token in enumerate(parts):
            if token and not token.isspace():
                lead, core, trail = split_word(token)
                if not is_word(core):
                    continue
                new = self.candidate(core)
                if new == core:
                    continue
                if self.accept(parts, i, lead + new + trail, core):
                    parts[i] = lead + new + trail
                    self.tally["changed"] += 1
                else:
                    self.tally["low_gain"] += 1
        return "".join(parts)

    def counts(self) -> dict[str, int]:
        """Words checked, unknown, changed, and left alone (tie, inflected form, LM check)."""
        return dict(self.tally)
