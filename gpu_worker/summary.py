"""From prediction lines to the per-method results and the recommendation.

Contract:
- The last line per (index, method) wins. A line with `error` is a failed sample: it counts in
  the headline as an empty prediction (every reference character deleted), so failing on hard
  lines never improves a score, and in `failures` beside it. A failed line whose reference could
  not be read is counted in `failures` only.
- `n` is the number of lines in the headline (decoded and failed). A method with no decoded
  line has no rates: `cer wer cer_mean wer_mean exact_match time_per_image_s images_per_s` and
  the intervals are null; it is never "best" (`best_method`).
- Timing is over decoded lines only.
- Per method: `cer_ci`/`wer_ci` (95% bootstrap) and `vs_baseline` (paired Δ CER, its interval,
  p-value, its Holm adjustment `p_holm` over every method compared with the baseline, lines
  needed), see `stats.py`; `significant` = the interval excludes 0 and `p_holm` < 0.05;
  `wrong_script_rate`, the share of predicted letters outside `data.script`
  (`preflight.wrong_script_rate`; null for `none` or no letters).
- `group_by` (lines carry `group`): per method `groups`, for each group value the same figures
  over that group's lines: `cer wer n cer_ci wer_ci vs_baseline` (paired per group) and
  `errors`.
- A derived method (`postprocess:`, its settings name its `source`) also has `vs_source`: the
  same paired comparison against its source, Holm-adjusted over the derived methods.
- Per method `errors` (`errors.py`): substitutions, insertions, deletions from the CER's own
  alignment, the most frequent confused character pairs, edits by class; null for a method
  with no decoded line.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import errors, metrics, stats
from .contract.checks import NO_SCRIPT
from .contract.postprocess import scored_methods
from .contract.schema import best_method, method_names
from .contract.spec import DEFAULT_RESAMPLES
from .preflight import wrong_script_rate

NO_GROUP = "(none)"  # the group of a line whose group_by column is empty
NULL_WHEN_FAILED = (
    "cer",
    "wer",
    "cer_mean",
    "wer_mean",
    "exact_match",
    "char_edits",
    "chars",
    "time_per_image_s",
    "images_per_s",
)


def _score_lines(
    mine: dict[int, dict], form: str, collapse: bool
) -> dict[int, metrics.SampleScore]:
    scores = {}
    for index, line in mine.items():
        if line.get("reference") is None:
            continue
        prediction = "" if "error" in line else line["prediction"]
        scores[index] = metrics.score_pair(line["reference"], prediction, form, collapse)
    return scores


def _line_errors(
    mine: dict[int, dict], form: str, collapse: bool, script: str
) -> dict[int, errors.ErrorCounts]:
    """Per line, the edits the CER counts (a failed line as an empty prediction)."""
    out = {}
    for index, line in mine.items():
        if line.get("reference") is None:
            continue
        prediction = "" if "error" in line else line["prediction"]
        out[index] = errors.line_errors(line["reference"], prediction, form, collapse, script)
    return out


def summarize_run(spec, lines: list[dict]) -> dict:
    """`summarize` with a playbook's scoring settings (`spec`: a `spec.RunSpec`)."""
    return summarize(
        scored_methods(spec.methods),
        lines,
        spec.normalize,
        spec.collapse_whitespace,
        spec.baseline_method,
        spec.bootstrap,
        script=spec.data.script,
        group_by=spec.group_by,
    )


def summarize(
    methods: Iterable,
    lines: list[dict],
    form: str = "nfc",
    collapse_whitespace: bool = True,
    baseline: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = stats.DEFAULT_SEED,
    script: str = NO_SCRIPT,
    group_by: str | None = None,
) -> dict:
    """Per-method results from prediction lines (`methods`: objects with `.name`, `.settings()`).

    `baseline` defaults to the first method; `script` gives `wrong_script_rate`; `group_by`
    adds `groups` (lines carry their `group`).
    """
    methods = list(methods)
    out: dict = {}
    counts: dict[str, dict] = {}
    line_errors: dict[str, dict[int, errors.ErrorCounts]] = {}
    for method in methods:
        # the last line per index wins; scores are summed in index order, so the figures do
        # not depend on the order lines were written in (width-sorted batches, merged shards)
        mine = {line["index"]: line for line in lines if line["method"] == method.name}
        mine = dict(sorted(mine.items()))
        good = [line for line in mine.values() if "error" not in line]
        bad = [line for line in mine.values() if "error" in line]
        scores = _score_lines(mine, form, collapse_whitespace)
        line_errors[method.name] = _line_errors(mine, form, collapse_whitespace, script)
        seconds = sum(line["seconds"] for line in good)
        body = {
            **metrics.aggregate(scores.values()).to_json(),
            "n": len(scores) if good else len(mine),
            "failures": len(bad),
            "failure_examples": [f"{b['index']}: {b['error']}" for b in bad[:3]],
            "time_per_image_s": seconds / len(good) if good else None,
            "images_per_s": len(good) / seconds if seconds else (None if not good else 0.0),
            "wrong_script_rate": wrong_script_rate((x["prediction"] for x in good), script),
            "settings": method.settings(),
        }
        body["errors"] = errors.total(line_errors[method.name].values()).to_json()
        if not good:
            body.update(dict.fromkeys(NULL_WHEN_FAILED))
            body["errors"] = None
        counts[method.name] = (
            {i: (s.char_edits, s.chars, s.word_edits, s.words) for i, s in scores.items()}
            if good
            else {}
        )
        out[method.name] = body
    base = baseline or (methods[0].name if methods else None)
    for name, extra in stats.method_statistics(counts, base, resamples, seed).items():
        out[name].update(extra)
    sources = {m.name: m.source for m in methods if getattr(m, "source", None)}
    for name, vs in stats.source_comparisons(counts, sources, resamples, seed).items():
        out[name]["vs_source"] = vs  # a derived method against the method it post-corrects
    if group_by:
        groups = {x["index"]: str(x.get("group") or NO_GROUP) for x in lines}
        for name, per_group in _group_figures(counts, groups, out, base, (resamples, seed)):
            out[name]["groups"] = per_group
            decoded = out[name]["errors"] is not None
            for g, figures in per_group.items():
                mine = (e for i, e in line_errors[name].items() if groups.get(i) == g)
                figures["errors"] = errors.total(mine).to_json() if decoded else None
    return out


def _group_figures(counts: dict, groups: dict, out: dict, base, boot: tuple):
    """(method, {group: figures}) for every method, each group scored and compared alone."""
    names = sorted(set(groups.values()))
    per_method: dict[str, dict] = {m: {} for m in counts}
    for g in names:
        sub = {m: {i: c for i, c in counts[m].items() if groups.get(i) == g} for m in counts}
        extra = stats.method_statistics(sub, base, *boot)
        for m, mine in sub.items():
            edits, chars = sum(c[0] for c in mine.values()), sum(c[1] for c in mine.values())
            word_edits, words = sum(c[2] for c in mine.values()), sum(c[3] for c in mine.values())
            per_method[m][g] = {
                "cer": metrics.rate(edits, chars) if mine else None,
                "wer": metrics.rate(word_edits, words) if mine else None,
                "n": len(mine),
                **extra[m],
            }
    return per_method.items()


def _fmt_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _holm(vs: dict) -> str:
    """`, Holm 0.012` when the adjusted p-value differs from the raw one (several methods)."""
    adjusted = vs.get("p_holm")
    if adjusted is None or adjusted == vs["p_value"]:
        return ""
    return f", Holm {_fmt_p(adjusted)[1:].removeprefix('=')}"


def _the(baseline: str) -> str:
    return "the baseline" if baseline == "baseline" else f"the baseline {baseline}"


def statement(results: dict, best: str | None, baseline: str) -> str:
    """One sentence a researcher can defend: significant, or not distinguishable at this n."""
    if best is None:
        return "no method scored any sample: every method failed"
    cer = results[best]["cer"]
    if best == baseline:
        return f"{_the(baseline)} has the lowest CER ({cer:.3f}); no method beats it"
    vs = results[best].get("vs_baseline")
    if not vs:
        return f"{best} has the lowest CER ({cer:.3f}); {_the(baseline)} failed"
    detail = (
        f"ΔCER {vs['delta_cer']:+.3f} (95% CI {vs['ci'][0]:+.3f} to {vs['ci'][1]:+.3f}, "
        f"{_fmt_p(vs['p_value'])}{_holm(vs)}, n={vs['n']})"
    )
    if vs["significant"]:
        return f"{best} is significantly better than {_the(baseline)}: {detail}"
    if vs.get("identical"):
        return f"{best} made the same edits as {_the(baseline)} on every line (identical): {detail}"
    return (
        f"{best} has the lowest CER, but this run cannot tell it apart from {_the(baseline)} "
        f"at n={vs['n']}: {detail}; about {vs['lines_needed']} lines would detect a difference "
        f"of {vs['lines_needed_delta']:.3f}"
    )


def recommend(results: dict, tolerance: float, baseline: str) -> dict:
    """The best method by CER (`best_method`), whether it beats the baseline significantly,
    and the fastest method within `tolerance` of the best CER.

    Significantly: its paired interval excludes 0 AND its Holm-adjusted p-value (`p_holm`, over
    every method compared with the baseline) is below `stats.ALPHA`, so running more methods
    never makes a chance winner look significant.
    """
    best = best_method(results)
    rec = {
        "best": best,
        "baseline": baseline,
        "significant": False,
        "fastest_within_tolerance": None,
        "cer_tolerance": tolerance,
        "statement": statement(results, best, baseline),
    }
    if best is None:
        return rec
    vs = results[best].get("vs_baseline") or {}
    rec["significant"] = _significant(vs)
    top = results[best]["cer"]
    near = [
        k
        for k in method_names(results)
        if results[k].get("cer") is not None and results[k]["cer"] <= top + tolerance
    ]
    rec["fastest_within_tolerance"] = max(near, key=lambda k: results[k]["images_per_s"] or 0.0)
    return rec


def _significant(vs: dict) -> bool:
    """The recommendation's rule (see `recommend`), re-applied to what results.json says."""
    if not vs:
        return False
    excludes_zero = vs["ci"][0] > 0 or vs["ci"][1] < 0
    return bool(excludes_zero and vs.get("p_holm", vs["p_value"]) < stats.ALPHA)


def failed_methods(results: dict) -> list[str]:
    """Methods with no scored sample (null rates): the run failed for them."""
    return [k for k in method_names(results) if results[k].get("cer") is None]
