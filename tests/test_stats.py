"""Bootstrap intervals, paired comparisons, the sample-size figure, "best", failures as
deletions, the ETA across methods of different cost, and `score` printing the intervals."""

import json
import math
import statistics
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from gpu_worker import stats
from gpu_worker.contract.methods import parse_method
from gpu_worker.contract.schema import best_method
from gpu_worker.eta import Tracker
from gpu_worker.methods import kind_of
from gpu_worker.summary import recommend, summarize


def test_interval_covers_the_true_corpus_cer_in_about_95_percent_of_repetitions():
    """i.i.d. lines: length 20..60, each character wrong with p=0.3, so the corpus CER is 0.3."""
    rng = np.random.default_rng(7)
    covered = 0
    for rep in range(200):
        lengths = rng.integers(20, 61, size=150)
        edits = rng.binomial(lengths, 0.3)
        lo, hi = stats.rate_interval(edits, lengths, resamples=1000, seed=rep)
        covered += lo <= 0.3 <= hi
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_bootstrap_is_deterministic_for_a_seed_and_differs_across_seeds():
    rng = np.random.default_rng(1)
    lengths = rng.integers(5, 50, size=300)
    edits = rng.binomial(lengths, 0.1)
    a = stats.rate_interval(edits, lengths, 500, seed=3)
    assert a == stats.rate_interval(edits, lengths, 500, seed=3)
    assert a != stats.rate_interval(edits, lengths, 500, seed=4)
    point = edits.sum() / lengths.sum()
    assert a[0] < point < a[1]


def test_paired_identical_predictions_give_zero_delta_and_p_one():
    lengths = np.full(40, 30)
    edits = np.arange(40) % 7
    res = stats.paired(edits, edits, lengths, 1000, seed=1)
    assert res.delta == 0 and res.ci == [0.0, 0.0] and res.p_value == 1.0
    assert not res.significant


def test_paired_clear_difference_is_significant():
    rng = np.random.default_rng(2)
    lengths = rng.integers(20, 60, size=200)
    a = rng.binomial(lengths, 0.30)
    b = rng.binomial(lengths, 0.20)
    res = stats.paired(a, b, lengths, 1000, seed=1)
    assert res.delta == pytest.approx((b - a).sum() / lengths.sum())
    assert res.p_value < 0.01 and res.significant and res.ci[1] < 0


def test_lines_needed_matches_the_normal_approximation_formula():
    """Equal lengths 10; half the lines have one edit fewer in b: Δ = -0.05, d/L in {-0.1, 0}."""
    n = 40
    lengths = np.full(n, 10)
    diffs = np.array([-1, 0] * (n // 2))
    z = statistics.NormalDist().inv_cdf(0.975) + statistics.NormalDist().inv_cdf(0.8)
    var = statistics.variance([d / 10 for d in diffs])  # 0.0025 * 40 / 39
    expected = math.ceil(z * z * var / 0.05**2)
    assert stats.lines_needed(diffs, lengths) == (expected, 0.05)
    assert expected == 9  # 7.85 * 40/39 = 8.05 -> 9 lines
    # no observed difference: sized for a ΔCER of 0.01; a quarter of the effect, 16x the lines
    zero = np.array([-1, 1] * (n // 2))
    needed, delta = stats.lines_needed(zero, lengths)
    var0 = statistics.variance([d / 10 for d in zero])
    assert delta == 0.01 and needed == math.ceil(z * z * var0 / 0.01**2)


def test_best_ignores_methods_without_rates_and_ties_go_to_the_first():
    results = {
        "greedy": {"cer": 0.3, "n": 10},
        "broken": {"cer": None, "n": 10},
        "beam": {"cer": 0.3, "n": 10},
        "run": {},
    }
    assert best_method(results) == "greedy"
    assert best_method({"broken": {"cer": None, "n": 5}, "run": {}}) is None


def _method(name):
    return SimpleNamespace(name=name, settings=lambda: {"kind": "greedy"})


def _line(i, method, ref, pred, error=None):
    line = {"index": i, "method": method, "reference": ref, "prediction": pred, "seconds": 0.1}
    if error:
        line.update(prediction=None, seconds=0.0, error=error)
    return line


def test_failures_count_as_deletions_and_an_all_failed_method_has_no_rates():
    refs = ["abcd", "efgh", "ijkl", "mnop"]
    lines = [_line(i, "good", r, r) for i, r in enumerate(refs)]
    lines += [_line(i, "some", r, r) for i, r in enumerate(refs[:2])]
    lines += [_line(i, "some", r, None, "RuntimeError: boom") for i, r in enumerate(refs) if i > 1]
    lines += [_line(i, "dead", r, None, "RuntimeError: boom") for i, r in enumerate(refs)]
    out = summarize([_method(m) for m in ("good", "some", "dead")], lines, resamples=200)
    assert out["good"]["cer"] == 0 and out["good"]["n"] == 4
    some = out["some"]
    assert some["cer"] == 0.5 and some["n"] == 4 and some["failures"] == 2  # 8 of 16 deleted
    assert some["vs_baseline"]["delta_cer"] == 0.5 and some["vs_baseline"]["n"] == 4
    dead = out["dead"]
    assert dead["n"] == 4 and dead["failures"] == 4
    assert all(dead[k] is None for k in ("cer", "wer", "exact_match", "time_per_image_s"))
    assert dead["cer_ci"] is None and dead["vs_baseline"] is None
    rec = recommend({**out, "run": {}}, 0.01, "good")
    assert rec["best"] == "good" and rec["statement"].startswith("the baseline good has")


def test_recommendation_says_significant_only_when_the_interval_excludes_zero():
    rng = np.random.default_rng(5)
    refs = ["".join(rng.choice(list("abcdefghij"), size=30)) for _ in range(300)]

    def noisy(text, p):
        return "".join(c if rng.random() > p else "x" for c in text)

    lines = [_line(i, "greedy", r, noisy(r, 0.3)) for i, r in enumerate(refs)]
    lines += [_line(i, "beam", r, noisy(r, 0.2)) for i, r in enumerate(refs)]
    out = summarize([_method("greedy"), _method("beam")], lines, resamples=500)
    rec = recommend({**out, "run": {}}, 0.0, "greedy")
    assert rec["best"] == "beam" and rec["significant"]
    assert rec["statement"].startswith("beam is significantly better than the baseline greedy")
    # 8 lines: beam fixes one character on two lines and breaks one on a third: Δ = -1/80
    refs = [f"line{i:06d}" for i in range(8)]
    lines = [_line(i, "greedy", r, r[:-1] + "?" if i < 3 else r) for i, r in enumerate(refs)]
    lines += [
        _line(i, "beam", r, r if i < 2 else r[:-1] + "?" if i < 4 else r)
        for i, r in enumerate(refs)
    ]
    out = summarize([_method("greedy"), _method("beam")], lines, resamples=500)
    vs = out["beam"]["vs_baseline"]
    assert vs["delta_cer"] == pytest.approx(-1 / 80) and not vs["significant"]
    assert vs["ci"][0] < 0 < vs["ci"][1] and vs["p_value"] > 0.05
    rec = recommend({**out, "run": {}}, 0.0, "greedy")
    assert rec["best"] == "beam" and not rec["significant"]
    assert "cannot tell it apart from the baseline greedy at n=8" in rec["statement"]
    assert f"about {vs['lines_needed']} lines" in rec["statement"] and vs["lines_needed"] > 8


def test_eta_prices_each_method_by_its_own_cost_within_25_percent():
    """Greedy timed and done; beam 5 and a 4-checkpoint ensemble ahead. True costs (s/image):
    greedy 0.1, beam 5 0.45, ensemble 0.38: roughly but not exactly proportional to beams x rows."""
    greedy = parse_method("greedy", {"kind": "greedy"})
    beam = parse_method("beam", {"kind": "beam", "num_beams": 5})
    ens = parse_method("ens", {"kind": "ensemble", "checkpoints": "all"})
    costs = {m.name: kind_of(m).relative_cost(4) for m in (greedy, beam, ens)}
    assert costs == {"greedy": 1.0, "beam": 5.0, "ens": 4.0}
    true = {"greedy": 0.1, "beam": 0.45, "ens": 0.38}
    tracker = Tracker({"greedy": 100, "beam": 100, "ens": 100}, costs)
    for _ in range(10):
        tracker.record("greedy", 10, 10 * true["greedy"])
    est = tracker.estimate()
    remaining = 100 * (true["beam"] + true["ens"])
    assert est.approximate and abs(est.seconds - remaining) / remaining < 0.25
    naive = 200 * true["greedy"]  # today's ETA: the current method's rate for everything
    assert abs(naive - remaining) / remaining > 0.7
    tracker.record("beam", 40, 40 * true["beam"])
    est = tracker.estimate()
    remaining = 60 * true["beam"] + 100 * true["ens"]
    assert est.approximate and abs(est.seconds - remaining) / remaining < 0.25
    tracker.record("beam", 60, 60 * true["beam"])
    tracker.record("ens", 50, 50 * true["ens"])
    est = tracker.estimate()
    assert not est.approximate and est.seconds == pytest.approx(50 * true["ens"])


def test_score_command_prints_intervals_and_the_paired_comparison(tmp_path):
    rows = []
    for i in range(30):
        ref = f"line {i} ଓଡ଼ିଆ ଭାଷା"
        rows.append({"index": i, "method": "greedy", "reference": ref, "prediction": ref[:-2]})
        rows.append({"index": i, "method": "beam", "reference": ref, "prediction": ref})
    rows.append({"index": 30, "method": "greedy", "reference": "abc", "error": "boom"})
    rows.append({"index": 30, "method": "beam", "reference": "abc", "prediction": "abc"})
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "gpu_worker", "score", str(path)]
    first = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)
    again = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)
    assert first == again
    greedy, beam = first["greedy"], first["beam"]
    assert greedy["n"] == 31 and greedy["failures"] == 1
    assert greedy["cer_ci"][0] <= greedy["cer"] <= greedy["cer_ci"][1]
    assert beam["cer"] == 0 and beam["vs_baseline"]["method"] == "greedy"
    assert beam["vs_baseline"]["delta_cer"] == pytest.approx(-greedy["cer"], abs=1e-6)
    assert beam["vs_baseline"]["significant"] and beam["vs_baseline"]["p_value"] < 0.01
    one = json.loads(
        subprocess.run([*cmd, "--method", "beam"], capture_output=True, check=True).stdout
    )
    assert one["cer"] == 0 and one["cer_ci"] == [0.0, 0.0]


def test_set_may_add_the_scoring_settings_a_playbook_leaves_at_their_defaults():
    from orchestrator.errors import ConfigError
    from orchestrator.playbooks import apply_override

    data = {"methods": {"greedy": {"kind": "greedy"}}, "scoring": None}
    apply_override(data, "scoring.bootstrap=2000", "pb.yaml")
    apply_override(data, "scoring.baseline=greedy", "pb.yaml")
    assert data["scoring"] == {"bootstrap": 2000, "baseline": "greedy"}
    with pytest.raises(ConfigError, match=r"has no key 'scoring.bootstrapp' \(did you mean"):
        apply_override(data, "scoring.bootstrapp=5", "pb.yaml")


def test_progress_json_carries_the_per_method_eta_and_says_when_it_is_approximate(tmp_path):
    from gpu_worker.outputs import Progress

    progress = Progress(tmp_path / "progress.json", total=30)
    progress.tracker = Tracker({"greedy": 10, "beam": 10, "ens": 10}, {"beam": 5.0, "ens": 4.0})
    progress.update(0, "greedy", 0.0, force=True)
    doc = json.loads((tmp_path / "progress.json").read_text())
    assert doc["eta_s"] is None and doc["eta_approximate"] is True  # nothing timed yet
    progress.tracker.record("greedy", 10, 1.0)
    progress.update(10, "greedy", 10.0, force=True)
    doc = json.loads((tmp_path / "progress.json").read_text())
    assert doc["eta_s"] == pytest.approx(10 * 5 * 0.1 + 10 * 4 * 0.1) and doc["eta_approximate"]
