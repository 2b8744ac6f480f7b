"""`postprocess:` on a method, end to end: derived methods `<method>+<suffix>` scored beside their
source and paired against it (results.json, predictions.jsonl, the README table), the beam's
n-best kept, the training text taken from `data.holdout`'s train part or a text file (never the
scored lines), and the playbook errors. The stage is a real one registered with `@register`."""

import json

import pytest
import yaml

from gpu_worker import postcorrect
from gpu_worker.contract import postprocess as contract
from gpu_worker.contract.schema import validate_results
from gpu_worker.contract.spec import PlaybookError, parse_playbook
from gpu_worker.data import holdout_split, sample_indices
from gpu_worker.metrics import score_pair
from gpu_worker.precheck import problems
from gpu_worker.runner import run
from orchestrator.readme import RunTable, render_run
from tests.conftest import SAMPLES
from tests.needs import requires_tesseract

LABELS = [json.loads(x) for x in (SAMPLES / "labels.jsonl").read_text().splitlines()]
HOLDOUT = {"test_size": 6, "seed": 3}


class Alphabet(postcorrect.Stage):
    """Drops characters never seen in the training text; given an n-best, first takes the
    hypothesis with the fewest unseen characters (the best-scored one on ties)."""

    def __init__(self, options: dict, train_texts) -> None:
        super().__init__(options, train_texts)
        self.seen = set("".join(train_texts)) | ({" "} if options["keep_spaces"] else set())
        self.removed = self.picked = 0

    def unseen(self, text: str) -> int:
        return sum(c not in self.seen for c in text)

    def apply(self, text: str, nbest=None) -> str:
        if nbest:
            best = min(nbest, key=lambda h: self.unseen(h[0]))[0]
            self.picked += best != text
            text = best
        kept = "".join(c for c in text if c in self.seen)
        self.removed += len(text) - len(kept)
        return kept

    def counts(self) -> dict[str, int]:
        return {"removed": self.removed, "picked": self.picked}


@pytest.fixture
def alphabet():
    """The `alphabet` stage registered on the worker and declared in the contract."""
    postcorrect.register("alphabet")(Alphabet)
    contract.declare_stage("alphabet", {"keep_spaces": True}, needs_text=True)
    yield
    postcorrect.STAGES.pop("alphabet")
    contract.STAGE_SETTINGS.pop("alphabet")
    contract.TEXT_STAGES.discard("alphabet")


def write(tmp_path, methods, model=None, **data):
    doc = {
        **({"model": model} if model else {}),
        "data": {"source": str(SAMPLES), "script": "none", **data},
        "generation": {"batch_size": 3, "max_new_tokens": 8},
        "methods": methods,
    }
    path = tmp_path / "pb.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


def read_lines(out):
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


def test_derived_methods_are_scored_beside_their_source(tmp_path, tiny_model, alphabet):
    methods = {
        "greedy": {"kind": "greedy", "postprocess": {"abc": ["alphabet"]}},
        "beam": {
            "kind": "beam",
            "num_beams": 3,
            "nbest": 3,
            "postprocess": {"abc": [{"stage": "alphabet", "keep_spaces": False}]},
        },
    }
    model = {"base": str(tiny_model / "base"), "checkpoints": str(tiny_model / "checkpoints")}
    path = write(tmp_path, methods, model, holdout=HOLDOUT)
    out = tmp_path / "out"
    results = run(path, out, log=lambda m: None)

    validate_results(json.loads((out / "results.json").read_text()))
    assert list(results) == ["greedy", "greedy+abc", "beam", "beam+abc", "run"]
    train, test = holdout_split(len(LABELS), HOLDOUT)
    seen = set("".join(LABELS[i]["text"] for i in train))
    lines = read_lines(out)
    by = {(x["method"], x["index"]): x for x in lines}
    assert sorted({i for _, i in by}) == sorted(test) and len(lines) == 4 * 6
    removed = picked = 0
    for i in test:
        beam = by["beam", i]
        assert len(beam["nbest"]) == 3 and beam["nbest"][0][0] == beam["prediction"]
        assert all(isinstance(s, float) for _, s in beam["nbest"])
        greedy = by["greedy", i]["prediction"]
        expected = "".join(c for c in greedy if c in seen or c == " ")
        assert by["greedy+abc", i]["prediction"] == expected
        removed += len(greedy) - len(expected)
        best = min(beam["nbest"], key=lambda h: sum(c not in seen for c in h[0]))[0]
        picked += best != beam["prediction"]
        assert by["beam+abc", i]["prediction"] == "".join(c for c in best if c in seen)
        assert by["greedy+abc", i]["seconds"] >= by["greedy", i]["seconds"]
    assert "nbest" not in by["greedy", test[0]] and "nbest" not in by["beam+abc", test[0]]

    derived = results["greedy+abc"]
    assert derived["postprocess"]["stages"]["alphabet"] == {"removed": removed, "picked": 0}
    assert derived["postprocess"]["train_lines"] == len(train)
    assert results["beam+abc"]["postprocess"]["stages"]["alphabet"]["picked"] == picked
    assert derived["settings"] == {
        "kind": "greedy",
        "adapter": "last",
        "source": "greedy",
        "postprocess": [{"stage": "alphabet", "keep_spaces": True}],
    }
    assert removed > 0  # the stage did work, and the derived CER is over its own outputs:
    scores = [
        score_pair(by["greedy+abc", i]["reference"], by["greedy+abc", i]["prediction"])
        for i in test
    ]
    edits, chars = sum(x.char_edits for x in scores), sum(x.chars for x in scores)
    assert derived["cer"] == pytest.approx(edits / chars)
    vs = derived["vs_source"]
    assert vs["method"] == "greedy" and vs["n"] == 6
    assert vs["delta_cer"] == pytest.approx(derived["cer"] - results["greedy"]["cer"], abs=1e-6)
    assert vs["p_holm"] >= vs["p_value"]  # Holm over greedy+abc and beam+abc
    assert derived["vs_baseline"]["method"] == "greedy"  # and against the baseline as usual
    assert derived["lora_path"] == results["greedy"]["lora_path"]

    table = render_run(RunTable("r1", "pb", results))
    assert "| greedy+abc | " in table and "| beam+abc | " in table
    assert "Post-correction greedy+abc vs greedy: Δ CER " in table

    again = run(path, out, resume=True, log=lambda m: None)  # nothing left: no line added
    assert len(read_lines(out)) == len(lines)
    assert again["greedy+abc"]["postprocess"] == derived["postprocess"]


@requires_tesseract
def test_tesseract_learns_from_a_text_file_never_from_scored_lines(tmp_path, alphabet):
    scored = {LABELS[i]["text"] for i in sample_indices(len(LABELS), 4, 1)}
    rest = [x["text"] for x in LABELS if x["text"] not in scored]
    text = tmp_path / "train.txt"
    text.write_text("\n".join(rest) + "\n")
    method = {"kind": "tesseract", "postprocess": {"lex": ["alphabet"]}}
    method["postprocess_text"] = str(text)
    path = write(tmp_path, {"tesseract": method}, n_samples=4, seed=1)
    results = run(path, tmp_path / "o", log=lambda m: None)
    assert list(results) == ["tesseract", "tesseract+lex", "run"]
    assert results["tesseract+lex"]["postprocess"]["train_lines"] == len(rest)
    assert results["tesseract+lex"]["vs_source"]["method"] == "tesseract"

    text.write_text("\n".join(x["text"] for x in LABELS) + "\n")  # now holds the test lines
    with pytest.raises(PlaybookError, match=r"train.txt holds [1-4] line\(s\) that this run"):
        run(path, tmp_path / "o2", log=lambda m: None)


def test_postprocess_errors_name_method_and_field(tmp_path, alphabet):
    def error(methods, **data) -> str:
        with pytest.raises(PlaybookError) as info:
            parse_playbook({"data": {"source": "x", **data}, "methods": methods})
        return str(info.value)

    tess = {"kind": "tesseract"}
    assert error({"t": {**tess, "postprocess": {"lex": ["alphabt"]}}}) == (
        "methods.t.postprocess.lex[0]: unknown stage 'alphabt' (did you mean 'alphabet'?); "
        "known: clean, lexicon, rescore, alphabet"
    )
    bad = {"lex": [{"stage": "alphabet", "keep_space": False}]}
    assert error({"t": {**tess, "postprocess": bad}}, holdout=HOLDOUT) == (
        "methods.t.postprocess.lex[0].keep_space: not an option of stage alphabet "
        "(did you mean 'keep_spaces'?)"
    )
    bad = {"lex": [{"stage": "rescore", "weight": "high"}]}
    assert "lex[0].weight: expected a number for stage rescore, got 'high'" in error(
        {"t": {**tess, "postprocess": bad}}, holdout=HOLDOUT
    )
    assert error({"t": {**tess, "postprocess": {"lm": ["rescore"]}}}, holdout=HOLDOUT) == (
        "methods.t.postprocess.lm[0]: rescore needs the method's n-best: set nbest: N on a beam "
        "method"
    )
    beam = {"kind": "beam", "num_beams": 3, "nbest": 3}
    assert error({"b": {**beam, "postprocess": {"lm": ["clean", "rescore"]}}}, holdout=HOLDOUT) == (
        "methods.b.postprocess.lm[1]: rescore reads the n-best, which only the first stage sees: "
        "put it first"
    )
    assert error({"t": {**tess, "postprocess": {"lex": ["alphabet"]}}}).startswith(
        "methods.t.postprocess: stage alphabet learns from training text: set "
        "methods.t.postprocess_text"
    )
    assert "is a method already" in error(
        {"t": {**tess, "postprocess": {"x": ["clean"]}}, "t+x": tess}
    )
    ok = parse_playbook(
        {"data": {"source": "x"}, "methods": {"t": {**tess, "postprocess": {"c": ["clean"]}}}}
    )
    assert [d.name for d in ok.methods[0].postprocess] == ["t+c"]
    doc = {
        "data": {"source": str(SAMPLES)},
        "methods": {
            "t": {**tess, "postprocess": {"l": ["alphabet"]}, "postprocess_text": "no.txt"}
        },
    }
    assert problems(doc, str(tmp_path)) == [
        "methods.t.postprocess_text: no.txt: no such file on this host"
    ]


def test_registered_stages_are_declared_in_the_contract(alphabet):
    from gpu_worker.derived import load_stages

    assert set(load_stages()) <= set(contract.STAGE_SETTINGS)


@requires_tesseract
def test_sharded_derived_methods_merge_to_the_single_host_figures(tmp_path, alphabet):
    """Two shards' derived lines merge to the single-host CER, comparison and stage counts."""
    from gpu_worker.merge import merge_results, read_shard

    method = {"kind": "tesseract", "postprocess": {"abc": ["alphabet"]}}
    folders = []
    for shard in (None, 0, 1):
        extra = {} if shard is None else {"shard": shard, "num_shards": 2}
        path = write(tmp_path, {"tess": method}, holdout=HOLDOUT, **extra)
        out = tmp_path / f"s{shard}"
        run(path, out, log=lambda m: None)
        book = parse_playbook(yaml.safe_load(path.read_text()), "pb").doc
        (out / "playbook.yaml").write_text(yaml.safe_dump(book, allow_unicode=True))
        folders.append(out)
    single = json.loads((folders[0] / "results.json").read_text())
    shards = [read_shard(f) for f in folders[1:]]
    merged, lines, _ = merge_results("p", "pb", shards, ["p-s0", "p-s1"])
    assert len(lines) == 2 * 6
    for key in ("cer", "vs_source", "vs_baseline", "postprocess"):
        assert merged["tess+abc"][key] == single["tess+abc"][key]
