"""Post-correction on a method (`postprocess:`), part of the contract: the stages' settings with
defaults (`STAGE_SETTINGS`, stated here once; the worker's stages in `gpu_worker/postcorrect`
carry the same names), and the parsing of a method's `postprocess:` into derived methods.

A playbook writes, on any method:

    methods:
      tess: {kind: tesseract, postprocess: {lex: [clean, lexicon]}}
      beam: {kind: beam, nbest: 5, postprocess: {lm: [clean, {stage: rescore, weight: 0.5}]},
             postprocess_text: data/train.txt}

Each `postprocess` entry `<suffix>: [stage, ...]` is a derived method `<method>+<suffix>`
(`tess+lex`): the source method's predictions run through the stages in order, scored as its
own method beside the source and paired against it. A stage is a name or `{stage: NAME,
option: value}`; unknown stages and options are errors naming method and field. Stages in
`TEXT_STAGES` learn from training text: the method's `postprocess_text` (a UTF-8 file, one line
of text per line, relative to the code folder) or else `data.holdout`'s train part; never the
lines being scored. Standard library only.

The settings (see each stage's module for what it does):
- `clean` (postcorrect/odia.py): `digits` "auto" (the training text's majority: Odia or ASCII),
  "odia", "ascii" or "keep"; `other_scripts` "map" (letters of another Indic script moved to the
  Odia letter in the same position of its Unicode block), "drop" or "keep"; `joiners` "auto"
  (ZWJ/ZWNJ dropped unless the training text uses them), "drop" or "keep"; `whitespace` true
  (runs collapsed, ends stripped, no space before a vowel sign or other combining mark).
- `lexicon` (postcorrect/lexicon.py): `words` a word-list file (one word or more per line) added
  to the training text's words, or null; `min_count` how often a training word must occur to
  enter the lexicon; `max_edits` the edit budget; `max_edit_ratio` the budget relative to the
  word's length in code points (budget = min(max_edits, floor(ratio * length)), at least 1);
  `min_length` shorter words are left alone; `frequency_tie_break` when several lexicon words
  are equally close, take the most frequent one (else leave the word unchanged);
  `guard_inflections` leave alone a word that is a lexicon stem plus an ending the lexicon's
  own word pairs show (ଘର/ଘରେ: a valid inflected form the small lexicon lacks); `min_lm_gain`
  a replacement must make the line more probable under a character 5-gram LM of the training
  text by this many nats per code point of the replaced word (null: no LM check).
- `rescore` (postcorrect/charlm.py): `order` of the character n-gram LM; `smoothing`
  "kneser_ney" or "witten_bell"; `discount` (Kneser–Ney); `weight` of the LM's log-probability
  added to the hypothesis' own log-probability.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .hints import did_you_mean

# stage -> {option: default}; the worker's stages (gpu_worker/postcorrect) carry these names
STAGE_SETTINGS: dict[str, dict[str, object]] = {
    "clean": {
        "digits": "auto",
        "other_scripts": "map",
        "joiners": "auto",
        "variants": "auto",
        "whitespace": True,
    },
    "lexicon": {
        "words": None,
        "min_count": 1,
        "max_edits": 2,
        "max_edit_ratio": 0.34,
        "min_length": 3,
        "frequency_tie_break": False,
        "guard_inflections": True,
        "min_lm_gain": 3.0,
    },
    "rescore": {"order": 5, "smoothing": "kneser_ney", "discount": 0.75, "weight": 1.0},
}
# options whose value is one of a few words, and options that may be null
STAGE_CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "clean": {
        "digits": ("auto", "odia", "ascii", "keep"),
        "other_scripts": ("map", "drop", "keep"),
        "joiners": ("auto", "drop", "keep"),
        "variants": ("auto", "keep"),
    },
    "rescore": {"smoothing": ("kneser_ney", "witten_bell")},
}
NULLABLE = {("lexicon", "words"), ("lexicon", "min_lm_gain")}
TEXT_STAGES: set[str] = {"lexicon", "rescore"}  # stages that learn from training text
KEYS = ("postprocess", "postprocess_text")  # the method settings this module reads
SEPARATOR = "+"
_SUFFIX = re.compile(r"[A-Za-z0-9_.-]+")


class PostprocessError(ValueError):
    """A `postprocess:` entry is invalid; the message names method and field."""


def declare_stage(name: str, settings: dict[str, object], needs_text: bool = False) -> None:
    """Add stage `name` with its `{option: default}` (a new stage's own declaration, and the
    way tests register theirs; pair with `postcorrect.register`)."""
    STAGE_SETTINGS[name] = dict(settings)
    if needs_text:
        TEXT_STAGES.add(name)
    else:
        TEXT_STAGES.discard(name)


@dataclass(frozen=True)
class Derived:
    """A method's predictions after post-correction stages, scored as a method of its own."""

    name: str
    source: str
    stages: tuple[dict, ...]  # ({"stage": NAME, **options with defaults}, ...)
    text: str | None = None  # the training text file (None: data.holdout's train part)
    source_settings: tuple = ()  # the source's settings as (key, value) pairs

    @property
    def needs_text(self) -> bool:
        """Whether a stage of it learns from training text."""
        return any(s["stage"] in TEXT_STAGES for s in self.stages)

    def settings(self) -> dict:
        """For results.json: the source's settings, the source and the stages."""
        return {**dict(self.source_settings), "source": self.source, "postprocess": self.pipe()}

    def pipe(self) -> list[dict]:
        """The stages with their options, as the worker builds them."""
        return [dict(s) for s in self.stages]


def _option(where: str, stage: str, key: str, value: object) -> None:
    default = STAGE_SETTINGS[stage][key]
    if value is None and (stage, key) in NULLABLE:
        return
    choices = STAGE_CHOICES.get(stage, {}).get(key)
    if choices is not None and value not in choices:
        raise PostprocessError(
            f"{where}.{key}: expected one of {', '.join(choices)}, got {value!r}"
        )
    want = type(default) if default is not None else object
    if want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    else:
        ok = isinstance(value, want)
    if not ok:
        kind = {float: "a number", int: "an integer >= 0"}.get(want, want.__name__)
        raise PostprocessError(f"{where}.{key}: expected {kind} for stage {stage}, got {value!r}")


def _stage(where: str, entry: object) -> dict:
    """One stage entry -> {"stage": NAME, **options with defaults}."""
    if isinstance(entry, str):
        entry = {"stage": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("stage"), str):
        raise PostprocessError(f"{where}: expected a stage name or {{stage: NAME, ...}}")
    name = entry["stage"]
    if name not in STAGE_SETTINGS:
        raise PostprocessError(
            f"{where}: unknown stage '{name}'{did_you_mean(name, STAGE_SETTINGS)}; "
            f"known: {', '.join(STAGE_SETTINGS)}"
        )
    table = STAGE_SETTINGS[name]
    for key, value in entry.items():
        if key == "stage":
            continue
        if key not in table:
            hint = did_you_mean(str(key), table)
            raise PostprocessError(f"{where}.{key}: not an option of stage {name}{hint}")
        _option(where, name, str(key), value)
    return {"stage": name, **{k: entry.get(k, d) for k, d in table.items()}}


NBEST_STAGES = {"rescore"}  # stages that choose among the method's n-best hypotheses


def _nbest_problem(where: str, stages: tuple[dict, ...], settings: dict) -> None:
    """A stage that reads the n-best must come first (only the first sees it) and needs a method
    that keeps one (`nbest: N` on a beam); else it would silently change nothing."""
    for i, stage in enumerate(stages):
        if stage["stage"] not in NBEST_STAGES:
            continue
        if i > 0:
            raise PostprocessError(
                f"{where}[{i}]: {stage['stage']} reads the n-best, which only the first stage "
                "sees: put it first"
            )
        if not settings.get("nbest"):
            raise PostprocessError(
                f"{where}[0]: {stage['stage']} needs the method's n-best: set nbest: N "
                "on a beam method"
            )


def parse_postprocess(method: str, body: dict, settings: dict) -> tuple[Derived, ...]:
    """The derived methods of method `method` (`body`: its playbook entry; `settings`: its
    results.json settings), or PostprocessError naming the field."""
    where = f"methods.{method}.postprocess"
    given, text = body.get("postprocess"), body.get("postprocess_text")
    if given is None:
        if text is not None:
            raise PostprocessError(f"methods.{method}.postprocess_text: set without postprocess")
        return ()
    if text is not None and not (isinstance(text, str) and text):
        raise PostprocessError(f"methods.{method}.postprocess_text: expected a file path")
    if not isinstance(given, dict) or not given:
        raise PostprocessError(f"{where}: expected a mapping of suffix -> [stage, ...]")
    out = []
    for suffix, stages in given.items():
        if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
            raise PostprocessError(f"{where}.{suffix}: a suffix is letters, digits, _ . -")
        if not isinstance(stages, list) or not stages:
            raise PostprocessError(f"{where}.{suffix}: expected a list of stages")
        built = tuple(_stage(f"{where}.{suffix}[{i}]", s) for i, s in enumerate(stages))
        _nbest_problem(f"{where}.{suffix}", built, settings)
        name = f"{method}{SEPARATOR}{suffix}"
        out.append(Derived(name, method, built, text, tuple(settings.items())))
    return tuple(out)


def scored_methods(methods: list) -> list:
    """Every method a run scores: each decoded method followed by its derived ones."""
    return [x for m in methods for x in (m, *getattr(m, "postprocess", ()))]


def text_problem(methods: list, holdout: object) -> str | None:
    """Why a derived method that needs training text has none (None: all have it)."""
    for m in methods:
        for d in getattr(m, "postprocess", ()):
            if d.needs_text and d.text is None and not holdout:
                stage = next(s["stage"] for s in d.stages if s["stage"] in TEXT_STAGES)
                return (
                    f"methods.{m.name}.postprocess: stage {stage} learns from training text: "
                    f"set methods.{m.name}.postprocess_text to a text file, or data.holdout to "
                    "score held-out rows and learn from the rest"
                )
    return None


def with_defaults(stage: str, options: dict) -> dict:
    """`options` for `stage` with every unset setting at its default, checked as a playbook's
    are (`_stage`): a `PostprocessError` (a ValueError) names an unknown stage, setting or
    value."""
    entry = _stage(f"postprocess {stage}", {**options, "stage": stage})
    del entry["stage"]
    return entry
