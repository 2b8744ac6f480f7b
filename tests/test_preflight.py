"""The gates before a long run (`gpu_worker/preflight.py`) on the tiny model and Tesseract: no-op
and identical checkpoints (fast path and peft), an all-empty first batch, a wrong-script first
batch, `scoring.preflight: off`, and the `wrong_script_rate` figures."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from gpu_worker.preflight import PreflightError, letter_counts, wrong_script_rate
from gpu_worker.runner import run
from tests.conftest import REPO, SAMPLES
from tests.needs import requires_tesseract


def _book(tmp_path, model: dict, methods: dict, data: dict | None = None, **extra):
    doc = {
        "model": model,
        "data": {"source": str(SAMPLES), "n_samples": 6, "seed": 1, **(data or {})},
        "generation": {"batch_size": 3, "max_new_tokens": 6},
        "methods": methods,
        **extra,
    }
    path = tmp_path / "pb.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


def _worker(book, out):
    cmd = [sys.executable, "-m", "gpu_worker", "run", str(book), "--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def _edit_safetensors(path, change) -> None:
    """Rewrite a safetensors file with `change(name, tensor)` applied to every tensor."""
    from safetensors.torch import load_file, save_file

    tensors = {k: change(k, v) for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def odd_checkpoints(tiny_model, tmp_path_factory):
    """checkpoint-50 as trained, checkpoint-60 a byte copy of it, checkpoint-70 with every LoRA B
    zero (what a run with loss 0.0 and grad_norm 0.0 saves)."""
    folder = tmp_path_factory.mktemp("odd") / "ckpts"
    source = tiny_model / "checkpoints" / "checkpoint-50"
    for step in (50, 60, 70):
        shutil.copytree(source, folder / f"checkpoint-{step}")
    _edit_safetensors(
        folder / "checkpoint-70" / "adapter_model.safetensors",
        lambda k, v: v * 0 if "lora_B" in k else v,
    )
    return folder


@pytest.mark.parametrize("lora", ["fast", "peft"])
def test_noop_and_identical_checkpoints_warn(tmp_path, tiny_model, odd_checkpoints, lora):
    model = {"base": str(tiny_model / "base"), "checkpoints": str(odd_checkpoints)}
    book = _book(
        tmp_path,
        model,
        {"g": {"kind": "greedy", "adapter": "checkpoint-50"}},
        {"script": "none", "n_samples": 3},
        generation={"batch_size": 3, "max_new_tokens": 4, "lora": lora},
    )
    said: list[str] = []
    results = run(book, tmp_path / "o", log=said.append)
    gates = results["run"]["preflight"]
    assert results["run"]["lora"] == lora
    assert gates["adapters"]["checkpoint-70"]["relative_delta"] == 0.0
    assert gates["adapters"]["checkpoint-50"]["relative_delta"] > 0.1  # random LoRA: large
    assert gates["identical"] == [["checkpoint-50", "checkpoint-60"]]
    assert gates["warnings"] == [
        "preflight: warning: checkpoint checkpoint-70: its LoRA delta is all zero: it decodes "
        "as the base model (was it trained? a loss and grad_norm of 0.0 in trainer_state.json "
        "mean no)",
        "preflight: warning: checkpoints checkpoint-50, checkpoint-60 hold identical LoRA tensors",
    ]
    assert all(w in said for w in gates["warnings"])


def test_fail_on_noop_stops_before_decoding(tmp_path, tiny_model, odd_checkpoints):
    model = {"base": str(tiny_model / "base"), "checkpoints": str(odd_checkpoints)}
    noop = {"fail_on_noop": True}
    book = _book(tmp_path, model, {"g": {"kind": "greedy"}}, {"script": "none"}, scoring=noop)
    res = _worker(book, tmp_path / "o")
    assert res.returncode == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert errors == [
        "gpu_worker: error: preflight: checkpoint checkpoint-70: its LoRA delta is all zero: it "
        "decodes as the base model (was it trained? a loss and grad_norm of 0.0 in "
        "trainer_state.json mean no) (scoring.fail_on_noop: true)"
    ]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "o" / "results.json").exists()
    assert not (tmp_path / "o" / "predictions.jsonl").exists()  # nothing decoded


@pytest.fixture(scope="module")
def mute_base(tiny_model, tmp_path_factory):
    """The tiny base with its output layer zeroed: every logit ties, the first token (the pad
    token, a special token) wins each step, and every decoded string is empty."""
    folder = tmp_path_factory.mktemp("mute") / "base"
    shutil.copytree(tiny_model / "base", folder)
    _edit_safetensors(folder / "model.safetensors", lambda k, v: v * 0 if "lm_head" in k else v)
    return folder


def test_all_empty_first_batch_stops_the_run(tmp_path, mute_base):
    book = _book(tmp_path, {"base": str(mute_base)}, {"greedy": {"kind": "greedy"}})
    res = _worker(book, tmp_path / "o")
    assert res.returncode == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in res.stderr
    line = errors[0]
    assert line.startswith(
        "gpu_worker: error: preflight: greedy: every prediction of the first batch is empty "
        "(3 image(s)): #"
    )
    assert line.count("predicted ''") == 3 and line.count(", reference '") == 3
    assert "check model.prompt_format and model.prompt, and the checkpoint" in line
    assert not (tmp_path / "o" / "results.json").exists()
    assert (tmp_path / "o" / "predictions.jsonl").read_text() == ""  # the batch is not kept


def test_preflight_off_skips_the_gates(tmp_path, mute_base):
    book = _book(
        tmp_path,
        {"base": str(mute_base)},
        {"greedy": {"kind": "greedy"}},
        scoring={"preflight": False},  # YAML's bare `off`
    )
    results = run(book, tmp_path / "o", log=lambda m: None)
    assert results["greedy"]["cer"] == 1.0 and results["greedy"]["n"] == 6
    assert results["greedy"]["wrong_script_rate"] is None  # no letters at all
    assert results["run"]["preflight"] == {"enabled": False}


def test_wrong_script_first_batch_stops_the_run(tmp_path, tiny_model):
    """The tiny model writes Odia and Latin letters at random: none of them Telugu."""
    model = {"base": str(tiny_model / "base"), "checkpoints": str(tiny_model / "checkpoints")}
    book = _book(tmp_path, model, {"g": {"kind": "greedy"}}, {"script": "telugu"})
    with pytest.raises(PreflightError) as caught:
        run(book, tmp_path / "o", log=lambda m: None)
    text = str(caught.value)
    assert text.startswith(
        "preflight: g: 100% of the first batch's letters are outside the telugu script"
    )
    assert text.count(" predicted ") == 3 and "model.prompt_format" in text
    assert not (tmp_path / "o" / "results.json").exists()


def _tesseract_eng_missing() -> str | None:
    if shutil.which("tesseract") is None:
        return "tesseract is not installed"
    langs = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout
    return None if "eng" in langs.split() else "needs tesseract-ocr-eng (scripts/install.sh)"


@requires_tesseract
@pytest.mark.skipif(_tesseract_eng_missing() is not None, reason=str(_tesseract_eng_missing()))
def test_tesseract_english_on_odia_lines_is_stopped_by_the_script_gate(tmp_path):
    book = _book(tmp_path, {}, {"eng": {"kind": "tesseract", "lang": "eng"}}, {"n_samples": 8})
    res = _worker(book, tmp_path / "o")
    assert res.returncode == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, res.stderr
    assert "preflight: eng: " in errors[0] and "outside the odia script" in errors[0]
    assert errors[0].count(" predicted ") == 3
    assert not (tmp_path / "o" / "results.json").exists()


def test_wrong_script_rate_counts_letters_outside_the_script():
    assert letter_counts("ଓଡ଼ିଆ abc", "odia") == (3, 8)  # 5 Odia letters and marks, 3 Latin
    assert wrong_script_rate(["ଓଡ଼ିଆ abc"], "odia") == 3 / 8
    assert wrong_script_rate(["12 -- !?", ""], "odia") is None  # ASCII digits are neutral
    assert wrong_script_rate(["୧୨୩"], "odia") == 0.0  # Odia digits are Odia
    assert wrong_script_rate(["తెలుగు"], "odia") == 1.0
    assert wrong_script_rate(["తెలుగు"], "telugu") == 0.0
    assert wrong_script_rate(["abc"], "none") is None


@requires_tesseract
def test_wrong_script_rate_in_results(tmp_path):
    """Tesseract's Odia model on the sample lines: the rate equals a recount of predictions."""
    book = _book(tmp_path, {}, {"ori": {"kind": "tesseract"}}, {"n_samples": 8})
    results = run(book, tmp_path / "o", log=lambda m: None)
    lines = [json.loads(x) for x in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    outside = sum(letter_counts(x["prediction"], "odia")[0] for x in lines)
    letters = sum(letter_counts(x["prediction"], "odia")[1] for x in lines)
    assert letters > 50
    assert results["ori"]["wrong_script_rate"] == outside / letters < 0.2
    stored = json.loads((tmp_path / "o" / "results.json").read_text())
    rate = stored["ori"]["wrong_script_rate"]
    assert rate == results["ori"]["wrong_script_rate"]
    from orchestrator import readme

    text = readme.render_run(readme.RunTable("r1", "t", stored))
    assert "| images/s | n | wrong script |" in text
    assert f"| 8 | {rate:.3f} |" in text
    from orchestrator.comparison import ComparisonRow
    from orchestrator.render_results import view_cells

    row = ComparisonRow.from_results("r1", "t", 0.0, "ori", stored["ori"])
    assert view_cells(row)[-1] == f"{rate:.3f}"  # the `orch results` column


def test_negligible_delta_is_a_noop_too():
    from gpu_worker.preflight import check_adapters

    report = {
        "adapters": {"a": {"relative_delta": 3e-9}, "b": {"relative_delta": 2e-3}},
        "identical": [],
    }
    assert check_adapters(report, fail_on_noop=False) == [
        "preflight: warning: checkpoint a: its LoRA delta is negligible (3.0e-09 of the base "
        "weights): it decodes as the base model (was it trained? a loss and grad_norm of 0.0 in "
        "trainer_state.json mean no)"
    ]
    with pytest.raises(PreflightError, match="checkpoint a: .* \\(scoring.fail_on_noop: true\\)"):
        check_adapters(report, fail_on_noop=True)
    assert check_adapters({"adapters": {"b": {"relative_delta": 2e-3}}}, True) == []
