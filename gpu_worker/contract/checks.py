"""Checks of playbook settings beyond their types: standard library only, part of the contract
(both sides validate a playbook with them). The data they check against is stated here too:
`SCRIPTS` (`data.script`: the code point ranges a script's letters come from, used by
`preflight.py`), `SWITCHES` (on/off settings), `PROMPT_FORMATS` and `IMAGE_FIELD`
(`model.prompt_format`, rendered by `prompts.py`).
"""

from __future__ import annotations

from .hints import did_you_mean

# data.script -> code point ranges (inclusive) its letters may come from
SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "odia": ((0x0B00, 0x0B7F),),
    "telugu": ((0x0C00, 0x0C7F),),
    "bengali": ((0x0980, 0x09FF),),
    "devanagari": ((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
    "tamil": ((0x0B80, 0x0BFF),),
    "latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF)),
    "none": (),
}
NO_SCRIPT = "none"
SWITCHES = ("on", "off")
PROMPT_FORMATS = ("chat", "raw")  # model.prompt_format (prompts.py renders them)
IMAGE_FIELD = "{image}"  # where a raw prompt template puts the image
# Names the worker's modules implement, stated here as data (they import them, not the reverse):
RULES = ("mbr", "majority", "longest")  # ensemble.py's voting rules
NORMAL_FORMS = ("nfc", "nfd", "nfkc", "nfkd", "none")  # metrics.normalize
COMPILE_SETTINGS = ("auto", "on", "off")  # fastpath/shapes.want_compile
DEFAULT_RESAMPLES = 1000  # stats: bootstrap resamples
LORA_PATHS = ("fast", "peft")  # generation.lora


def template_problem(prompt: object, prompt_format: object) -> str | None:
    """What is wrong with `model.prompt` for `model.prompt_format` (`raw` needs a template
    holding `{image}`); None when nothing."""
    if prompt_format not in PROMPT_FORMATS:
        return f"model.prompt_format: '{prompt_format}' is not one of {', '.join(PROMPT_FORMATS)}"
    if prompt_format == "raw" and (not isinstance(prompt, str) or IMAGE_FIELD not in prompt):
        return (
            "model.prompt: with model.prompt_format: raw it is a template holding {image} "
            '(e.g. "{image} "), got ' + repr(prompt)
        )
    return None


def settings_problem(data: dict, scoring: dict) -> str | None:
    """What is wrong with `data.script`, `data.holdout` ({test_size, seed}) or the gates'
    settings (`scoring.preflight` on|off, YAML's bare on/off arriving as booleans;
    `fail_on_noop`; `group_by`, a column name or null); None when nothing. Values are
    normalised in place (preflight to on/off, holdout's seed filled in)."""
    if data["script"] not in SCRIPTS:
        hint = did_you_mean(data["script"], SCRIPTS)
        return f"data.script: unknown '{data['script']}'{hint}; known: {', '.join(SCRIPTS)}"
    if data["holdout"] is not None:
        problem = _holdout_problem(data)
        if problem:
            return problem
    value = scoring["preflight"]
    if isinstance(value, bool):
        scoring["preflight"] = value = "on" if value else "off"
    if value not in SWITCHES:
        return f"scoring.preflight: expected on or off, got {value!r}"
    if not isinstance(scoring["fail_on_noop"], bool):
        return f"scoring.fail_on_noop: expected true or false, got {scoring['fail_on_noop']!r}"
    group = scoring["group_by"]
    if group is not None and (not isinstance(group, str) or not group):
        return f"scoring.group_by: expected a column name, got {group!r}"
    return None


def _holdout_problem(data: dict) -> str | None:
    holdout = data["holdout"]
    if not isinstance(holdout, dict):
        return "data.holdout: expected a mapping like {test_size: 0.1, seed: 42}"
    for key in holdout:
        if key not in ("test_size", "seed"):
            return f"data.holdout.{key}: unknown setting{did_you_mean(key, ('test_size', 'seed'))}"
    data["holdout"] = holdout = {
        "test_size": holdout.get("test_size"),
        "seed": holdout.get("seed", 42),
    }
    size, seed = holdout["test_size"], holdout["seed"]
    fraction = isinstance(size, float) and 0 < size < 1
    count = isinstance(size, int) and not isinstance(size, bool) and size >= 1
    if not (fraction or count):
        return (
            "data.holdout.test_size: expected a fraction between 0 and 1 or a number of rows, "
            f"got {size!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        return f"data.holdout.seed: expected an integer >= 0, got {seed!r}"
    return None


def scoring_problem(scoring: dict, names: list[str]) -> str | None:
    """`normalize`, `cer_tolerance` (>= 0), `bootstrap` (resamples, >= 100), `baseline`."""
    tol = scoring["cer_tolerance"]
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0:
        return f"scoring.cer_tolerance: expected a number >= 0, got {tol!r}"
    form = scoring["normalize"]
    if form not in NORMAL_FORMS:
        return f"scoring.normalize: expected one of {', '.join(NORMAL_FORMS)}, got {form!r}"
    resamples = scoring["bootstrap"]
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        return f"scoring.bootstrap: expected an integer >= 100 (resamples), got {resamples!r}"
    baseline = scoring["baseline"]
    if baseline not in names:
        return (
            f"scoring.baseline: '{baseline}' is not a method{did_you_mean(baseline, names)}; "
            f"methods: {', '.join(names)}"
        )
    return None


def generation_problem(gen: dict) -> str | None:
    """`generation.compile` (auto|on|off; YAML's bare on/off arrive as booleans) and `.lora`."""
    value = gen["compile"]
    if isinstance(value, bool):
        gen["compile"] = value = "on" if value else "off"
    if value not in COMPILE_SETTINGS:
        return f"generation.compile: expected one of {', '.join(COMPILE_SETTINGS)}, got {value!r}"
    if gen["lora"] not in LORA_PATHS:
        return f"generation.lora: expected one of {', '.join(LORA_PATHS)}, got {gen['lora']!r}"
    return None


def shard_problem(data: dict) -> str | None:
    """`data.num_shards` >= 1 and 0 <= `data.shard` < num_shards (integers)."""
    count, shard = data["num_shards"], data["shard"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return f"data.num_shards: expected a positive integer, got {count!r}"
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < count:
        return f"data.shard: expected an integer from 0 to {count - 1}, got {shard!r}"
    return None
