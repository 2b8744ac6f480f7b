"""Multiple comparisons (Holm) and the per-method error analysis of results.json."""

from types import SimpleNamespace

import pytest

from gpu_worker import errors, metrics, stats
from gpu_worker.contract.schema import SchemaError, validate_results
from gpu_worker.summary import recommend, summarize


def _method(name):
    return SimpleNamespace(name=name, settings=lambda: {"kind": "greedy"})


def _line(i, method, ref, pred, group=None):
    line = {"index": i, "method": method, "reference": ref, "prediction": pred, "seconds": 0.1}
    if group is not None:
        line["group"] = group
    return line


def test_holm_matches_a_hand_computed_example_of_three_methods():
    # sorted: a 0.01 -> 3 * 0.01 = 0.03; c 0.03 -> 2 * 0.03 = 0.06; b 0.04 -> 1 * 0.04 = 0.04,
    # raised to 0.06 to stay monotone
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert stats.holm({"only": 0.02}) == {"only": 0.02}
    assert stats.holm({"a": 0.5, "b": 0.6}) == {"a": 1.0, "b": 1.0}  # capped at 1


def _results(p_value, p_holm, ci=(-0.1, -0.02)):
    body = {
        "cer": 0.1,
        "wer": 0.2,
        "exact_match": 0.0,
        "n": 100,
        "failures": 0,
        "time_per_image_s": 0.1,
        "images_per_s": 10.0,
    }
    vs = {"method": "base", "delta_cer": -0.05, "ci": list(ci), "n": 100, "lines_needed": 50}
    vs.update(p_value=p_value, p_holm=p_holm, lines_needed_delta=0.05)
    vs["significant"] = (ci[0] > 0 or ci[1] < 0) and p_holm < stats.ALPHA
    return {"base": {**body, "cer": 0.15}, "new": {**body, "vs_baseline": vs}, "run": {}}


def test_recommendation_uses_the_holm_adjusted_p_value():
    raw_only = recommend(_results(0.03, 0.09), 0.0, "base")
    assert raw_only["best"] == "new" and not raw_only["significant"]
    assert "cannot tell it apart" in raw_only["statement"] and "Holm 0.090" in raw_only["statement"]
    both = recommend(_results(0.01, 0.03), 0.0, "base")
    assert both["significant"] and both["statement"].startswith("new is significantly better")
    # an interval that includes 0 is never significant, whatever the p-value
    assert not recommend(_results(0.01, 0.01, ci=(-0.1, 0.01)), 0.0, "base")["significant"]


def test_summarize_adjusts_over_every_method_and_within_each_group():
    refs = [f"line{i:04d}text" for i in range(40)]
    group = ["a" if i % 2 else "b" for i in range(40)]
    lines = [_line(i, "base", r, r[:-2], group[i]) for i, r in enumerate(refs)]
    lines += [
        _line(i, "same", r, r[:-2] if i % 5 else r[:-1], group[i]) for i, r in enumerate(refs)
    ]
    lines += [_line(i, "good", r, r, group[i]) for i, r in enumerate(refs)]
    lines += [_line(i, "bad", r, r[:-3], group[i]) for i, r in enumerate(refs)]
    methods = [_method(m) for m in ("base", "same", "good", "bad")]
    out = summarize(methods, lines, resamples=300, group_by="group")
    compared = ("same", "good", "bad")
    raw = {m: out[m]["vs_baseline"]["p_value"] for m in compared}
    expected = stats.holm(raw)
    for m in compared:
        vs = out[m]["vs_baseline"]
        assert (
            vs["p_holm"] == pytest.approx(expected[m], abs=1e-5) and vs["p_holm"] >= vs["p_value"]
        )
    for g in ("a", "b"):
        per = {m: out[m]["groups"][g]["vs_baseline"] for m in compared}
        adjusted = stats.holm({m: v["p_value"] for m, v in per.items()})
        assert all(per[m]["p_holm"] == pytest.approx(adjusted[m], abs=1e-5) for m in compared)
    assert out["good"]["vs_baseline"]["significant"] and out["bad"]["vs_baseline"]["significant"]
    validate_results({**out, "run": {}})


def test_schema_accepts_p_holm_and_refuses_a_wrong_one():
    validate_results(_results(0.01, 0.03))
    old = _results(0.01, 0.03)
    del old["new"]["vs_baseline"]["p_holm"]  # written before the adjustment existed
    validate_results(old)
    for p_holm, why in ((0.005, "below p_value"), (1.5, "<= 1"), ("0.1", "finite number")):
        doc = _results(0.01, 0.03)
        doc["new"]["vs_baseline"]["p_holm"] = p_holm
        with pytest.raises(SchemaError, match=why) as err:
            validate_results(doc)
        assert "results.new.vs_baseline.p_holm" in str(err.value)


PAIRS = [
    ("kitten", "sitting"),  # 2 substitutions, 1 insertion
    ("flaw", "lawn"),  # 1 deletion, 1 insertion
    ("abc", ""),  # everything deleted
    ("", "xy"),  # an empty reference: the prediction's length in insertions
    ("same  text", "same text"),  # normalised alike: no edit
    ("ଓଡ଼ିଆ ଭାଷା", "ଓଡିଆ ଭିଷ"),
]


@pytest.mark.parametrize(("ref", "hyp"), PAIRS)
def test_substitutions_insertions_deletions_add_up_to_the_cer_edits(ref, hyp):
    counts = errors.line_errors(ref, hyp, script="odia")
    assert counts.edits == metrics.score_pair(ref, hyp).char_edits
    assert sum(counts.pairs.values()) == counts.edits == sum(counts.classes.values())


def test_kitten_sitting_counts_and_pairs():
    counts = errors.line_errors("kitten", "sitting")
    assert (counts.substitutions, counts.insertions, counts.deletions) == (2, 1, 0)
    assert counts.pairs == {("k", "s"): 1, ("e", "i"): 1, ("", "g"): 1}
    assert errors.line_errors("abc", "").deletions == 3


def test_odia_vowel_sign_nukta_virama_digit_and_other_script_classes():
    # ା (U+0B3E) read as ି (U+0B3F): a vowel-sign substitution
    vowel = errors.line_errors("ଭାଷା", "ଭିଷା", script="odia")
    assert vowel.substitutions == 1 and vowel.pairs == {("ା", "ି"): 1}
    assert vowel.classes == {"vowel_sign": 1}
    # ଡ଼ read as ଡ: after NFC the nukta (U+0B3C) is a separate mark, and it is deleted
    nukta = errors.line_errors("ଓଡ଼ିଆ", "ଓଡିଆ", script="odia")
    assert nukta.deletions == 1 and nukta.pairs == {("\u0b3c", ""): 1}
    assert nukta.classes == {"nukta": 1}
    # ନ୍ତ (conjunct): the consonant after the virama read wrong is a conjunct error
    conjunct = errors.line_errors("ଅନ୍ତ", "ଅନ୍ଦ", script="odia")
    assert conjunct.pairs == {("ତ", "ଦ"): 1} and conjunct.classes == {"virama_conjunct": 1}
    # a plain consonant swap outside a conjunct is "other"
    assert errors.line_errors("ଅନତ", "ଅନଦ", script="odia").classes == {"other": 1}
    digits = errors.line_errors("୧୨ 34", "୧୩ 35", script="odia")
    assert digits.classes == {"digit": 2}
    latin = errors.line_errors("ଭାଷା", "ଭାଷa", script="odia")
    assert latin.classes == {"vowel_sign": 1}  # either side's class: ା replaced by a letter
    foreign = errors.line_errors("ଭାଷ", "ଭାa", script="odia")  # ଷ read as a Latin a
    assert foreign.classes == {"other_script": 1}
    assert errors.line_errors("ଭାଷ", "ଭାa").classes == {"other": 1}  # script none: no judging


def test_results_carry_errors_per_method_and_per_group():
    refs = ["ଓଡ଼ିଆ ଭାଷା", "ଭାଷା", "kitten", "abc"]
    preds = ["ଓଡିଆ ଭାଷା", "ଭିଷା", "sitting", None]
    group = ["odia", "odia", "latin", "latin"]
    lines = [_line(i, "base", r, r, group[i]) for i, r in enumerate(refs)]
    for i, (r, p) in enumerate(zip(refs, preds, strict=True)):
        line = _line(i, "ocr", r, p, group[i])
        if p is None:
            line.update(prediction=None, error="RuntimeError: boom")
        lines.append(line)
    out = summarize([_method("base"), _method("ocr")], lines, resamples=50, group_by="group")
    ocr = out["ocr"]["errors"]
    assert (
        out["base"]["errors"]["classes"]["other"] == 0 and out["base"]["errors"]["confusions"] == []
    )
    assert (ocr["substitutions"], ocr["insertions"], ocr["deletions"]) == (3, 1, 4)
    assert ocr["substitutions"] + ocr["insertions"] + ocr["deletions"] == out["ocr"]["char_edits"]
    assert ["\u0b3c", "", 1] in ocr["confusions"] and ["ା", "ି", 1] in ocr["confusions"]
    assert ocr["classes"]["nukta"] == 1 and ocr["classes"]["vowel_sign"] == 1
    per = {g: out["ocr"]["groups"][g]["errors"] for g in ("odia", "latin")}
    assert per["odia"]["classes"]["nukta"] == 1 and per["odia"]["deletions"] == 1
    assert per["latin"]["deletions"] == 3 and per["latin"]["substitutions"] == 2
    validate_results({**out, "run": {}})


def test_schema_refuses_malformed_errors():
    doc = _results(0.01, 0.03)
    doc["new"]["errors"] = errors.line_errors("ଭାଷା", "ଭିଷା", script="odia").to_json()
    validate_results(doc)
    bad = [
        ("substitutions", -1, "errors.substitutions: expected >= 0"),
        ("confusions", [["ା", "ି"]], r"errors.confusions\[0\]: expected \[ref, hyp, count\]"),
        ("classes", [], "errors.classes: expected an object"),
    ]
    for field, value, why in bad:
        broken = _results(0.01, 0.03)
        broken["new"]["errors"] = {**doc["new"]["errors"], field: value}
        with pytest.raises(SchemaError, match=why):
            validate_results(broken)
