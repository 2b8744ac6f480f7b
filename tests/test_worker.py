"""The worker on the small model with real loading code: every decoding method, determinism,
batched ensembles, resume after a kill, a corrupt image, the results schema, Tesseract."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml
from PIL import Image

from gpu_worker import engine as engine_mod
from gpu_worker.contract.schema import SchemaError, validate_results
from gpu_worker.contract.spec import PlaybookError
from gpu_worker.metrics import score_pair
from gpu_worker.runner import load_playbook, run
from tests.conftest import REPO, SAMPLES
from tests.needs import requires_tesseract

ALL_METHODS = {
    "greedy": {"kind": "greedy"},
    "greedy_base": {"kind": "greedy", "adapter": "base"},
    "beam_3": {"kind": "beam", "num_beams": 3},
    "sample": {"kind": "sample", "temperature": 0.7, "top_p": 0.9, "seed": 7},
    "ensemble": {"kind": "ensemble", "vote": "mbr"},
    "ensemble_majority": {"kind": "ensemble", "vote": "majority"},
    "ensemble_longest": {"kind": "ensemble", "vote": "longest"},
    "ensemble_logits": {"kind": "ensemble", "vote": "logits"},
    "combined": {
        "kind": "combined",
        "num_beams": 3,
        "checkpoints": ["checkpoint-50", "checkpoint-250"],
    },
}


def playbook(tmp_path, tiny_model, methods, source=SAMPLES, n=6, name="pb", **extra):
    doc = {
        "model": {"base": str(tiny_model / "base"), "checkpoints": str(tiny_model / "checkpoints")},
        "data": {"source": str(source), "n_samples": n, "seed": 1, "script": "none"},  # random
        "generation": {"batch_size": 3, "max_new_tokens": 8},
        "methods": methods,
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


def predictions(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_every_method_runs_and_results_match_the_schema(tmp_path, tiny_model):
    out = tmp_path / "out"
    results = run(playbook(tmp_path, tiny_model, ALL_METHODS), out, log=lambda m: None)
    validate_results(json.loads((out / "results.json").read_text()))
    assert list(results)[:-1] == list(ALL_METHODS) and list(results)[-1] == "run"
    for name in ALL_METHODS:
        body = results[name]
        assert body["n"] == 6 and body["failures"] == 0
        assert 0 <= body["exact_match"] <= 1 and body["cer"] >= 0
        assert body["time_per_image_s"] > 0 and body["images_per_s"] > 0
        assert 0 < body["warmup_s"] < body["wall_s"]  # 2 batches: the first is the warm-up
        assert body["settings"]["kind"] == ALL_METHODS[name]["kind"]
    lines = predictions(out)
    assert len(lines) == 6 * len(ALL_METHODS)
    assert {tuple(sorted(line)) for line in lines} == {
        ("cer", "char_edits", "chars", "index", "method", "prediction", "reference", "seconds")
    }
    for name in ALL_METHODS:
        body = results[name]
        assert body["cer_ci"][0] <= body["cer"] <= body["cer_ci"][1]
        assert (body["vs_baseline"] is None) == (name == "greedy")  # the first method
    prov = results["run"]
    assert prov["baseline"] == "greedy" and prov["bootstrap"]["resamples"] == 1000
    assert prov["data"]["n_samples"] == 6 and len(prov["data"]["indices_sha256"]) == 16
    assert prov["model"]["checkpoints"][-1].endswith("checkpoint-250")
    assert prov["recommendation"]["best"] in ALL_METHODS
    progress = json.loads((out / "progress.json").read_text())
    assert progress["done"] == progress["total"] == 6 * len(ALL_METHODS)
    assert progress["eta_s"] == 0 and progress["eta_approximate"] is False


def test_adapters_really_differ_and_base_is_not_an_adapter(tmp_path, tiny_model):
    methods = {f"c{s}": {"kind": "greedy", "adapter": f"checkpoint-{s}"} for s in (50, 150)}
    methods["base"] = {"kind": "greedy", "adapter": "base"}
    run(playbook(tmp_path, tiny_model, methods), tmp_path / "o", log=lambda m: None)
    by = {}
    for line in predictions(tmp_path / "o"):
        by.setdefault(line["method"], []).append(line["prediction"])
    assert by["c50"] != by["c150"] and by["c50"] != by["base"]


def test_batched_ensemble_equals_voting_over_single_checkpoint_runs(tmp_path, tiny_model):
    """One generate with adapter_names per row gives what each checkpoint gives alone."""
    from gpu_worker.data import DataSpec, Samples
    from gpu_worker.ensemble import vote

    eng = engine_mod.load(
        str(tiny_model / "base"), engine_mod.expand_checkpoints(str(tiny_model / "checkpoints"))
    )
    samples = Samples(DataSpec(source=str(SAMPLES)))
    images = [samples.image(i) for i in (0, 1)]
    gen = {"max_new_tokens": 8, "do_sample": False}
    alone = {name: eng.generate(images, [name, name], **gen) for name in eng.adapters}
    rows = [img for img in images for _ in eng.adapters]
    batched = eng.generate(rows, [n for _ in images for n in eng.adapters], **gen)
    k = len(eng.adapters)
    for i in range(2):
        assert batched[i * k : (i + 1) * k] == [alone[n][i] for n in eng.adapters]
        assert vote(batched[i * k : (i + 1) * k]) == vote([alone[n][i] for n in eng.adapters])


def test_greedy_beam_and_seeded_sampling_are_deterministic(tmp_path, tiny_model):
    methods = {k: ALL_METHODS[k] for k in ("greedy", "beam_3", "sample")}
    methods["sample_other_seed"] = {"kind": "sample", "temperature": 1.5, "seed": 99}
    methods["sample_again"] = {"kind": "sample", "temperature": 1.5, "seed": 99}
    book = playbook(tmp_path, tiny_model, methods)
    run(book, tmp_path / "a", log=lambda m: None)
    run(book, tmp_path / "b", log=lambda m: None)
    strip = lambda out: [(x["index"], x["method"], x["prediction"]) for x in predictions(out)]  # noqa: E731
    assert strip(tmp_path / "a") == strip(tmp_path / "b")
    by = {}
    for line in predictions(tmp_path / "a"):
        by.setdefault(line["method"], []).append(line["prediction"])
    assert by["sample_other_seed"] == by["sample_again"]
    assert by["sample_other_seed"] != by["greedy"]


def test_resume_after_a_killed_run_decodes_only_what_is_missing(tmp_path, tiny_model):
    book = playbook(
        tmp_path, tiny_model, {"greedy": {"kind": "greedy"}, "beam_3": ALL_METHODS["beam_3"]}, n=12
    )
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "gpu_worker", "run", str(book), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pred = out / "predictions.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if pred.exists() and pred.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # However far the run got before the kill landed (on a fast machine it may have finished),
    # leave the folder as a kill after the third line leaves it: 3 lines, no results.json.
    first = pred.read_text().splitlines(keepends=True)[:3]
    assert len(first) == 3 and all(line.endswith("\n") for line in first), first
    pred.write_text("".join(first))
    kept = predictions(out)
    (out / "results.json").unlink(missing_ok=True)
    with open(pred, "a") as f:
        f.write('{"index": 5, "meth')  # a line torn by the kill
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    done = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = predictions(out)
    assert lines[: len(kept)] == kept
    assert (
        sorted((x["index"], x["method"]) for x in lines)
        == sorted({(x["index"], x["method"]) for x in lines})
        and len(lines) == 24
    )
    fresh = tmp_path / "fresh"
    run(book, fresh, log=lambda m: None)
    key = lambda x: (x["method"], x["index"])  # noqa: E731
    assert [x["prediction"] for x in sorted(lines, key=key)] == [
        x["prediction"] for x in sorted(predictions(fresh), key=key)
    ]


def test_corrupt_image_is_a_counted_failure_not_a_crash(tmp_path, tiny_model):
    data = tmp_path / "data"
    shutil.copytree(SAMPLES, data)
    (data / "line-03.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    book = playbook(
        tmp_path,
        tiny_model,
        {"greedy": {"kind": "greedy"}, "ensemble": {"kind": "ensemble"}},
        source=data,
        n=None,
    )
    results = run(book, tmp_path / "o", log=lambda m: None)
    lines = predictions(tmp_path / "o")
    for name in ("greedy", "ensemble"):
        assert results[name]["failures"] == 1 and results[name]["n"] == 40
        assert results[name]["failure_examples"][0].startswith("3: UnidentifiedImageError")
        # the failed line counts as an empty prediction: all its reference characters deleted
        mine = [x for x in lines if x["method"] == name]
        scores = [score_pair(x["reference"], x["prediction"] or "") for x in mine]
        assert results[name]["char_edits"] == sum(s.char_edits for s in scores)
        failed = next(s for x, s in zip(mine, scores, strict=True) if "error" in x)
        assert failed.char_edits == failed.chars > 0
        assert results[name]["cer"] == pytest.approx(
            sum(s.char_edits for s in scores) / sum(s.chars for s in scores)
        )
    bad = [x for x in lines if "error" in x]
    assert [x["index"] for x in bad] == [3, 3] and bad[0]["prediction"] is None


CRASHING = """#!/bin/sh
case "$1" in --list-langs|--version) exec tesseract "$@";; esac
echo "Segmentation fault (core dumped)" >&2
exit 139
"""


@requires_tesseract
def test_a_method_failing_on_every_image_exits_1_never_best_and_not_published(tmp_path):
    """A Tesseract whose recognition crashes on every image (its checks pass) beside a working
    one: the worker writes everything, exits 1; null rates; README row failed, not bold; the
    model-index leaves it out."""
    from gpu_worker.contract.schema import method_names
    from orchestrator import hub, readme

    fake = tmp_path / "crashing-tesseract"
    fake.write_text(CRASHING)
    fake.chmod(0o755)
    book = tmp_path / "t.yaml"
    methods = {"crashing": {"kind": "tesseract", "binary": str(fake)}, "tesseract": {}}
    methods["tesseract"] = {"kind": "tesseract"}
    book.write_text(
        yaml.safe_dump(
            {
                "data": {"source": str(SAMPLES), "n_samples": 8, "seed": 1},
                "scoring": {"baseline": "tesseract", "bootstrap": 200},
                "methods": methods,
            }
        )
    )
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "gpu_worker", "run", str(book), "--out", str(out)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert "no sample scored for crashing" in res.stderr
    doc = validate_results(json.loads((out / "results.json").read_text()))
    assert method_names(doc) == ["crashing", "tesseract"]
    dead = doc["crashing"]
    assert dead["n"] == dead["failures"] == 8 and dead["cer"] is None and dead["wer"] is None
    assert "Segmentation fault" in dead["failure_examples"][0]
    assert doc["tesseract"]["cer"] > 0 and doc["tesseract"]["failures"] == 0
    assert doc["run"]["recommendation"]["best"] == "tesseract"
    assert doc["run"]["baseline"] == "tesseract" and doc["run"]["bootstrap"]["resamples"] == 200
    table = readme.RunTable("r1", "t", doc)
    assert table.best == "tesseract"
    text = readme.render_run(table)
    assert "| crashing | failed (8 of 8) | — | — | — | — | — | 8 | — |" in text  # wrong script
    assert f"| tesseract | **{doc['tesseract']['cer']:.3f}** (" in text
    configs = {r.metric_config for r in hub.eval_results([table], None)}
    assert configs == {"t/tesseract"}  # table/method


def test_sampling_picks_the_same_indices_and_hash(tmp_path, tiny_model):
    from gpu_worker.data import DataSpec, sample_indices, selection_hash

    assert sample_indices(40, 6, 1) == sample_indices(40, 6, 1)
    assert sample_indices(40, 6, 1) != sample_indices(40, 6, 2)
    assert sample_indices(5, 10, 1) == [0, 1, 2, 3, 4]
    spec = DataSpec(source="x")
    assert selection_hash(spec, [1, 2]) != selection_hash(spec, [1, 3])


def test_playbook_errors_name_the_field(tmp_path, tiny_model):
    path = playbook(tmp_path, tiny_model, {"g": {"kind": "greedy"}}, generaton={})
    with pytest.raises(PlaybookError, match=r"pb.yaml: generaton: unknown section \(did you mean"):
        load_playbook(path)
    for scoring, match in (
        (
            {"baseline": "gredy"},
            r"scoring.baseline: 'gredy' is not a method \(did you mean 'greedy'",
        ),
        ({"bootstrap": 10}, r"scoring.bootstrap: expected an integer >= 100"),
        ({"bootstrap": "many"}, r"scoring.bootstrap: expected an integer"),
    ):
        path = playbook(tmp_path, tiny_model, {"greedy": {"kind": "greedy"}}, scoring=scoring)
        with pytest.raises(PlaybookError, match=match):
            load_playbook(path)
    path = playbook(
        tmp_path,
        tiny_model,
        {"g": {"kind": "greedy"}},
        scoring={"bootstrap": 2000, "baseline": "g"},
    )
    spec = load_playbook(path)
    assert spec.bootstrap == 2000 and spec.baseline_method == "g"
    path = playbook(tmp_path, tiny_model, {"g": {"kind": "greedy", "adapter": "checkpoint-7"}})
    with pytest.raises(Exception, match="'checkpoint-7' not among checkpoint-50"):
        run(path, tmp_path / "o", log=lambda m: None)


def test_schema_rejects_bad_results():
    good = {
        "run": {},
        "m": {
            "cer": 0.1,
            "wer": 0.2,
            "exact_match": 0.5,
            "n": 3,
            "failures": 0,
            "time_per_image_s": 0.1,
            "images_per_s": 10,
        },
    }
    validate_results(good)
    nulls = dict.fromkeys(("cer", "wer", "exact_match", "time_per_image_s", "images_per_s"))
    validate_results({"run": {}, "m": {**good["m"], **nulls, "failures": 3}})  # all failed
    for broken, match in (
        ({"m": good["m"]}, "missing provenance"),
        ({"run": {}}, "no method results"),
        ({"run": {}, "m": {**good["m"], "cer": "0.1"}}, r"results.m.cer: expected a finite"),
        ({"run": {}, "m": {**good["m"], "n": 2.5}}, r"results.m.n: expected an integer"),
        ({"run": {}, "m": {**good["m"], "exact_match": 1.5}}, "fraction"),
        ({"run": {}, "m": {**good["m"], "cer": None}}, "null only for a method with no scored"),
        ({"run": {}, "m": {**good["m"], "cer_ci": [0.2, 0.1]}}, r"cer_ci: low > high"),
    ):
        with pytest.raises(SchemaError, match=match):
            validate_results(broken)


@requires_tesseract
def test_tesseract_reads_the_bundled_samples(tmp_path):
    """Tesseract's Odia model on the 40 degraded sample lines: CER measured 0.244; bound 0.40."""
    book = tmp_path / "t.yaml"
    book.write_text(
        yaml.safe_dump(
            {
                "data": {"source": str(SAMPLES)},
                "methods": {"tesseract": {"backend": "tesseract", "lang": "ori", "psm": 7}},
            }
        )
    )
    results = run(book, tmp_path / "o", log=lambda m: None)
    t = results["tesseract"]
    assert t["n"] == 40 and t["failures"] == 0
    assert 0.05 < t["cer"] < 0.40, t["cer"]
    assert t["time_per_image_s"] > 0
    line = predictions(tmp_path / "o")[0]
    assert set(line) == {
        *("cer", "char_edits", "chars", "index", "method", "prediction", "reference", "seconds")
    }
    validate_results(json.loads((tmp_path / "o" / "results.json").read_text()))


@requires_tesseract
def test_missing_tesseract_names_the_debian_packages(tmp_path):
    book = tmp_path / "t.yaml"
    book.write_text(
        yaml.safe_dump(
            {
                "data": {"source": str(SAMPLES)},
                "methods": {"t": {"kind": "tesseract", "binary": "tesseract-not-installed"}},
            }
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "gpu_worker", "run", str(book), "--out", str(tmp_path / "o")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "install Debian's tesseract-ocr and tesseract-ocr-ori" in res.stderr
    book.write_text(
        book.read_text()
        .replace("tesseract-not-installed", "tesseract")
        .replace("kind: tesseract", "kind: tesseract\n    lang: xyz")
    )
    res = subprocess.run(
        [sys.executable, "-m", "gpu_worker", "run", str(book), "--out", str(tmp_path / "p")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "no 'xyz' language data" in res.stderr


def test_datasets_save_to_disk_folder_is_a_source(tmp_path):
    """A DatasetDict saved with save_to_disk loads by split, with its image and text columns."""
    import datasets

    from gpu_worker.data import DataSpec, Samples

    rows = [json.loads(x) for x in (SAMPLES / "labels.jsonl").read_text().splitlines()[:5]]
    ds = datasets.Dataset.from_dict(
        {"img": [str(SAMPLES / r["image"]) for r in rows], "label": [r["text"] for r in rows]}
    ).cast_column("img", datasets.Image())
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "ds"))
    spec = DataSpec(
        source=str(tmp_path / "ds"), split="test", image_column="img", text_column="label"
    )
    samples = Samples(spec)
    assert len(samples) == 5 and samples.text(2) == rows[2]["text"]
    assert samples.image(2).size == Image.open(SAMPLES / rows[2]["image"]).size
    with pytest.raises(ValueError, match="column 'text' not in"):
        Samples(DataSpec(source=str(tmp_path / "ds"), split="test", image_column="img"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "labels.jsonl").write_text('{"image": "a.png"}\n')
    with pytest.raises(ValueError, match=r"labels.jsonl:1: expected"):
        Samples(DataSpec(source=str(bad)))
