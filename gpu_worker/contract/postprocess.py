"""Post-correction stages in a playbook (`postprocess:` on a method), part of the contract:
each stage's settings and their defaults, stated once here (`STAGE_SETTINGS`, stage name ->
{option: default}). The worker's stages (`gpu_worker.postcorrect`, whose `STAGES` has exactly
these names) read their defaults from it; the playbook side validates `postprocess:` entries
against it. Standard library only.

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

from .hints import did_you_mean

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


def with_defaults(stage: str, options: dict) -> dict:
    """`options` for `stage` with every unset setting at its default; ValueError naming an
    unknown stage or setting."""
    if stage not in STAGE_SETTINGS:
        hint = did_you_mean(stage, STAGE_SETTINGS)
        raise ValueError(f"postprocess: unknown stage '{stage}'{hint}")
    known = STAGE_SETTINGS[stage]
    for key in options:
        if key not in known:
            hint = did_you_mean(str(key), known)
            raise ValueError(f"postprocess {stage}.{key}: not a setting of {stage}{hint}")
    return {**known, **options}
