"""Voting rules on hand-made candidate sets, and the decoding-method registry's errors."""

import pytest

from gpu_worker.contract.spec import MethodError, parse_method, parse_methods
from gpu_worker.ensemble import longest, majority, mbr, vote
from gpu_worker.methods import kind_of


def test_mbr_picks_the_edit_distance_medoid():
    # distances: abcd-abce 1, abcd-abxd 1, abcd-zzzzzz 6 ... abcd is closest to the rest
    assert mbr(["abce", "abcd", "abxd", "zzzzzz"]) == "abcd"
    # Odia: two readings agree but for one sign each; the outlier loses
    assert mbr(["ଓଡ଼ିଆ", "ଓଡିଆ", "ଓଡ଼ିଆ ଭାଷା ଭାଷା", "ଓଡ଼ିଅ"]) == "ଓଡ଼ିଆ"


def test_mbr_ties_go_to_the_earliest_candidate():
    assert mbr(["ab", "ba"]) == "ab"
    assert mbr(["only"]) == "only"


def test_majority_counts_and_breaks_ties_by_mbr():
    assert majority(["x", "abc", "abc", "y"]) == "abc"
    # "abd" and "xyz" both appear twice; "abd" is closer to everything else
    assert majority(["xyz", "abd", "xyz", "abd", "abc", "abe"]) == "abd"


def test_longest_is_todays_rule_and_can_be_wrong():
    cands = ["ଓଡ଼ିଆ", "ଓଡ଼ିଆ", "ଓଡ଼ିଆ ଭାଷା ଭାଷା ଭାଷା"]
    assert longest(cands) == "ଓଡ଼ିଆ ଭାଷା ଭାଷା ଭାଷା"
    assert vote(cands, "mbr") == "ଓଡ଼ିଆ" == vote(cands, "majority")


def test_unknown_rule_and_empty_candidates():
    with pytest.raises(ValueError, match="known: mbr, majority, longest"):
        vote(["a"], "best")
    with pytest.raises(ValueError, match="at least one candidate"):
        mbr([])


def test_method_registry_errors_name_the_field():
    with pytest.raises(MethodError, match=r"methods.b.kind: unknown 'beams' \(did you mean 'beam'"):
        parse_method("b", {"kind": "beams"})
    with pytest.raises(MethodError, match=r"methods.b.num_beam: not a setting of kind beam"):
        parse_method("b", {"kind": "beam", "num_beam": 5})
    with pytest.raises(MethodError, match="methods.e.vote: unknown rule 'best'"):
        parse_method("e", {"kind": "ensemble", "vote": "best"})
    with pytest.raises(MethodError, match="'run' is reserved"):
        parse_methods({"run": {"kind": "greedy"}})
    with pytest.raises(MethodError, match="temperature: expected a positive number"):
        parse_method("s", {"kind": "sample", "temperature": 0})


def test_tesseract_is_a_backend():
    t = parse_method("t", {"backend": "tesseract", "lang": "ori", "psm": 7})
    assert (t.kind, t.lang, t.psm, t.needs_model) == ("tesseract", "ori", 7, False)
    assert parse_method("t", {"kind": "tesseract"}).kind == "tesseract"
    with pytest.raises(MethodError, match="unknown 'tesserct' \\(did you mean 'tesseract'"):
        parse_method("t", {"backend": "tesserct"})
    with pytest.raises(MethodError, match="kind greedy does not run on backend tesseract"):
        parse_method("t", {"backend": "tesseract", "kind": "greedy"})


def test_generate_arguments():
    beam = parse_method("b", {"kind": "beam"})
    assert kind_of(beam).generate_kwargs(64) == {
        "max_new_tokens": 64,
        "do_sample": False,
        "num_beams": 5,
        "early_stopping": True,
    }
    sample = parse_method("s", {"kind": "sample", "temperature": 0.7, "top_p": 0.9, "seed": 3})
    assert kind_of(sample).generate_kwargs(10) == {
        "max_new_tokens": 10,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
    }
    assert parse_method("c", {"kind": "combined"}).settings() == {
        "kind": "combined",
        "num_beams": 5,
        "checkpoints": "all",
        "vote": "mbr",
    }


def test_every_contract_kind_has_one_registered_behaviour():
    """The worker's registry and the contract's settings table name the same kinds, and each
    kind's class answers for its own cost, checkpoints and model use."""
    from gpu_worker.contract.methods import BACKEND_OF, KINDS, MODEL_FREE
    from gpu_worker.methods import KIND_CLASSES

    assert list(KIND_CLASSES) == list(KINDS) == list(BACKEND_OF)
    assert MODEL_FREE == {"tesseract"}
    made = {k: parse_method(k, {"kind": k}) for k in KINDS}
    assert {k: kind_of(m).needs_model for k, m in made.items()} == {
        k: k != "tesseract" for k in KINDS
    }
    costs = {k: kind_of(m).relative_cost(4) for k, m in made.items()}
    assert costs == {
        "greedy": 1.0,
        "beam": 5.0,
        "sample": 1.0,
        "ensemble": 4.0,
        "combined": 20.0,
        "tesseract": 1.0,
    }
    names = ["checkpoint-1", "checkpoint-2"]
    assert kind_of(made["greedy"]).checkpoints_needed(names) == ["checkpoint-2"]
    assert kind_of(made["ensemble"]).checkpoints_needed(names) == names
    assert kind_of(made["tesseract"]).checkpoints_needed(names) == []
    bad = parse_method("g", {"kind": "greedy", "adapter": "checkpoint-9"})
    with pytest.raises(MethodError, match="methods.g.adapter: 'checkpoint-9' not among"):
        kind_of(bad).checkpoints_needed(names)


def test_nbest_is_a_beam_setting_within_its_beams():
    assert parse_method("b", {"kind": "beam", "num_beams": 4, "nbest": 3}).nbest == 3
    assert "nbest" not in parse_method("b", {"kind": "beam"}).settings()
    with pytest.raises(MethodError, match="methods.b.nbest: 6 hypotheses need num_beams >= 6"):
        parse_method("b", {"kind": "beam", "nbest": 6})
    with pytest.raises(MethodError, match="methods.g.nbest: not a setting of kind greedy"):
        parse_method("g", {"kind": "greedy", "nbest": 2})
