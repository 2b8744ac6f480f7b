"""Post-correction stages: text in, text out, applied to a method's predictions after decoding.

Contract (the worker's side; the playbook's `postprocess:` settings are validated against
`contract.postprocess.STAGE_SETTINGS` (stage -> {setting: default}), whose names equal `STAGES`;
the stages take their defaults from it):
- `STAGES` maps a stage name to its class; `@register("name")` adds one.
- A stage is built once per run as `cls(options, train_texts)`: `options` are the playbook's
  settings for it (defaults filled in by the contract), `train_texts` the training lines' text
  (`data.holdout`'s train part or the text file the playbook names), never the lines being scored.
- `stage.apply(text, nbest)` returns the corrected text; `nbest` is the beam's n-best as
  `[(text, log_prob), ...]` best first, or None when the method kept none.
- `stage.counts()` returns what the stage did (e.g. `{"changed": 12}`), for results.json.
- `build(stages, train_texts)` builds a `Pipeline` from `[{"stage": NAME, **options}, ...]`.
Standard library only, so the stages run wherever the worker runs (no model needed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

NBest = Sequence[tuple[str, float]]


class Stage:
    """One post-correction stage; subclasses set `name` and override `apply`."""

    name = ""

    def __init__(self, options: dict, train_texts: Sequence[str]) -> None:
        self.options = dict(options)

    def apply(self, text: str, nbest: NBest | None = None) -> str:
        """The corrected `text` (`nbest`: the beam's hypotheses, best first, or None)."""
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        """What this stage did so far, for results.json."""
        return {}


STAGES: dict[str, type[Stage]] = {}


def register(name: str) -> Callable[[type[Stage]], type[Stage]]:
    """Class decorator: make a `Stage` available to playbooks as `name`."""

    def add(cls: type[Stage]) -> type[Stage]:
        cls.name = name
        STAGES[name] = cls
        return cls

    return add


class Pipeline:
    """Stages applied in order; only the first sees the n-best (later ones see one text)."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages

    def apply(self, text: str, nbest: NBest | None = None) -> str:
        """`text` through every stage."""
        for stage in self.stages:
            text = stage.apply(text, nbest)
            nbest = None
        return text

    def counts(self) -> dict[str, dict[str, int]]:
        """Per stage name, what it did."""
        return {stage.name: stage.counts() for stage in self.stages}


def build(stages: Sequence[dict], train_texts: Sequence[str]) -> Pipeline:
    """A `Pipeline` from `[{"stage": NAME, **options}, ...]` (names must be in `STAGES`)."""
    built = []
    for entry in stages:
        options = {k: v for k, v in entry.items() if k != "stage"}
        built.append(STAGES[entry["stage"]](options, train_texts))
    return Pipeline(built)


# The stages register themselves on import; imported last, once the names above exist.
from . import charlm, lexicon, odia  # noqa: E402, F401
