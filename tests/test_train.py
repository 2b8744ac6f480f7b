"""LoRA fine-tuning on the small model (CPU): it learns, it resumes exactly after a SIGKILL, its
guards trip, its checkpoints decode through the fast path as peft decodes them, the training
rules are validated and the held-out rows are datasets' own split.

Runs set OMP_NUM_THREADS=1: on a shared 2-core machine torch's threads otherwise spin against
each other (one thread is both faster there and deterministic)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from gpu_worker import engine as engine_mod
from gpu_worker import train as train_mod
from gpu_worker.collator import AnswerCollator, PlaceholderError
from gpu_worker.contract.spec import PlaybookError
from gpu_worker.contract.trainspec import parse_train
from gpu_worker.data import holdout_split
from gpu_worker.guards import GuardError, StepGuard
from gpu_worker.metrics import score_pairs
from tests.conftest import REPO, SAMPLES

SHORT = (26, 18, 12, 35, 39)  # five of the shortest sample lines
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    """A labels.jsonl folder with five short sample lines."""
    folder = tmp_path_factory.mktemp("lines")
    rows = [json.loads(x) for x in (SAMPLES / "labels.jsonl").read_text().splitlines()]
    picked = [rows[i] for i in SHORT]
    for row in picked:
        shutil.copy(SAMPLES / row["image"], folder)
    (folder / "labels.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked)
    )
    return folder


def book(path, model, lines, train: dict, data: dict | None = None, **sections) -> str:
    """Write a training playbook; return its path."""
    doc = {
        "name": "t",
        "model": {"base": str(model / "base")},
        "data": {"source": str(lines), **(data or {})},
        "generation": {"batch_size": 4, "max_new_tokens": 24},
        "train": {"eval_every": 0, "log_every": 1, **train},
        **sections,
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return str(path)


def worker(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpu_worker", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def progress(log: str) -> list[dict]:
    """The `orch-progress` lines of a log as dicts of floats."""
    out = []
    for line in log.splitlines():
        if line.startswith("orch-progress "):
            out.append({k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", line)})
    return out


def greedy_cer(eng, samples, indices, adapter) -> float:
    images = [samples.image(i) for i in indices]
    texts = eng.generate(images, [adapter] * len(images), max_new_tokens=24, do_sample=False)
    return score_pairs([(samples.text(i), t) for i, t in zip(indices, texts, strict=True)]).cer


@pytest.fixture(scope="module")
def sharp(tiny_model, tmp_path_factory):
    """The small model with its (random, untrained) lm_head scaled up 10 times: at its own init
    scale the logits are too flat for any LoRA on the layers below to make them confident."""
    from transformers import AutoModelForImageTextToText

    folder = tmp_path_factory.mktemp("sharp")
    shutil.copytree(tiny_model / "base", folder / "base")
    model = AutoModelForImageTextToText.from_pretrained(folder / "base", dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(10)
    model.save_pretrained(folder / "base")
    return folder


@pytest.fixture(scope="module")
def learned(sharp, lines, tmp_path_factory):
    """One training run on four lines (the fifth held out): (spec path, out folder, log)."""
    folder = tmp_path_factory.mktemp("learn")
    train = {"steps": 120, "batch_size": 4, "lr": 0.01, "warmup_steps": 5, "save_every": 40,
             "log_every": 10, "eval_every": 60, "eval_samples": 1,
             "scheduler": "cosine"}  # fmt: skip
    path = book(
        folder / "learn.yaml",
        sharp,
        lines,
        train,
        data={"holdout": {"test_size": 1, "seed": 42}},
        lora={"r": 16, "alpha": 32, "dropout": 0.0},
    )
    done = worker("train", path, "--out", str(folder / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    return path, folder / "out", done.stdout


def test_the_tiny_model_learns_its_lines(learned):
    path, out, log = learned
    steps = progress(log)
    losses = [p["loss"] for p in steps if "loss" in p]
    assert len(losses) == 12 and losses[-1] < 0.3 * losses[0]  # the log shows the loss falling
    assert sum(b < a for a, b in zip(losses, losses[1:], strict=False)) >= 8
    assert [p["step"] for p in steps if "eval_cer" in p and "loss" not in p] == [0, 60, 120]
    assert steps[-1]["total"] == 120 and "lr" in steps[-1] and "eta_s" in steps[-1]
    spec = train_mod.read_spec(path)
    samples, train_rows, held = train_mod.split_rows(spec)
    assert len(train_rows) == 4 and len(held) == 1 and held[0] not in train_rows
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-120", "checkpoint-40", "checkpoint-80"]
    eng = engine_mod.load(spec.model["base"], [str(out / "checkpoints" / "checkpoint-120")])
    assert eng.mode == "fast"
    before = greedy_cer(eng, samples, train_rows, None)
    after = greedy_cer(eng, samples, train_rows, "checkpoint-120")
    assert before > 0.8 and after < 0.3, (before, after)


def test_checkpoints_decode_through_the_fast_path_as_peft_does(learned, lines):
    _, out, _ = learned
    folder = out / "checkpoints"
    assert (folder / "checkpoint-40" / "adapter_model.safetensors").is_file()
    ckpts = engine_mod.expand_checkpoints(str(folder))  # the folder evaluation playbooks name
    base = train_mod.read_spec(learned[0]).model["base"]
    ref = engine_mod.load(base, ckpts, lora="peft")
    fast = engine_mod.load(base, ckpts)
    assert (ref.mode, fast.mode) == ("peft", "fast")
    samples = train_mod.split_rows(train_mod.read_spec(learned[0]))[0]
    images = [samples.image(i) for i in range(len(samples))]
    gen = {"max_new_tokens": 24, "do_sample": False}
    want = {a: ref.generate(images, [a] * len(images), **gen) for a in [None, *ref.adapters]}
    assert len({tuple(v) for v in want.values()}) >= 3  # base, half-trained, trained differ
    for name, texts in want.items():
        assert fast.generate(images, [name] * len(images), **gen) == texts  # merged
    stacked = fast.generate_ensemble(images, fast.adapters, **gen)
    assert stacked == [[want[a][i] for a in fast.adapters] for i in range(len(images))]
    mixed = [None, *fast.adapters, None]  # one row each: stacked LoRA over mixed rows
    assert fast.generate(images, mixed, **gen) == [want[a][i] for i, a in enumerate(mixed)]


def _weights(ckpt) -> dict:
    return load_file(str(ckpt / "adapter_model.safetensors"))


def _history(ckpt) -> list:
    state = json.loads((ckpt / "trainer_state.json").read_text())
    return [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h]


def test_killed_and_resumed_ends_as_an_uninterrupted_run(tiny_model, lines, tmp_path):
    train = {"steps": 12, "batch_size": 2, "lr": 0.005, "warmup_steps": 2, "save_every": 3,
             "scheduler": "linear"}  # fmt: skip
    path = book(tmp_path / "r.yaml", tiny_model, lines, train, lora={"dropout": 0.1})
    whole = worker("train", path, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_worker", "train", path, "--out", str(out)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("orch-progress step=5 "):
            proc.send_signal(signal.SIGKILL)  # checkpoint-3 is complete, step 6 may be saving
            break
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "checkpoints" / "checkpoint-12").exists()
    resumed = worker("train", path, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from checkpoint-" in resumed.stdout
    a, b = tmp_path / "whole/checkpoints/checkpoint-12", out / "checkpoints/checkpoint-12"
    assert _history(a) == _history(b) and len(_history(a)) == 12  # the same loss at every step
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    keys = list(wa)  # default targets: the language model's attention and MLP projections
    assert all(".language_model." in k for k in keys) and not any("visual" in k for k in keys)
    assert any("mlp.down_proj" in k for k in keys) and any("self_attn.q_proj" in k for k in keys)


def test_a_collator_that_labels_nothing_trips_its_guard(tiny_model, lines, tmp_path):
    path = book(tmp_path / "g.yaml", tiny_model, lines, {"steps": 3, "batch_size": 2})
    spec = train_mod.read_spec(path)

    def masked(rows):
        batch = AnswerCollator(engine_mod.load_processor(spec.model["base"]), None)(rows)
        batch["labels"][:] = -100
        return batch

    with pytest.raises(GuardError, match="no unmasked label token"):
        train_mod.run(path, str(tmp_path / "out"), collator=masked)


def test_a_learning_rate_of_0_trips_its_guard(tiny_model, lines, tmp_path):
    train = {"steps": 5, "batch_size": 2, "lr": 0, "warmup_steps": 1}
    path = book(tmp_path / "z.yaml", tiny_model, lines, train)
    done = worker("train", path, "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "gpu_worker: error: guard: learning rate is 0 at step 2, after 1 warm-up steps: "
        "check train.lr and train.scheduler"
    )


def test_step_guard_counts_bad_steps_in_a_row():
    guard = StepGuard(k=3, warmup_steps=0)
    for step, loss in enumerate((0.0, 0.0, 1.0, float("nan"), float("inf")), 1):
        guard.add_loss(loss)
        guard.after_step(step, 1.0, 1e-4)  # a good step in between resets the count
    guard.add_loss(0.0)
    with pytest.raises(GuardError, match=r"loss 0.0 for 3 steps in a row \(to step 6"):
        guard.after_step(6, 1.0, 1e-4)
    guard = StepGuard(k=2, warmup_steps=0)
    guard.add_loss(2.0)
    guard.after_step(1, 0.0, 1e-4)
    guard.add_loss(2.0)
    with pytest.raises(GuardError, match="gradient norm 0.0 for 2 steps"):
        guard.after_step(2, 0.0, 1e-4)
    warm = StepGuard(k=5, warmup_steps=2)
    warm.add_loss(1.0)
    warm.after_step(1, 1.0, 0.0)  # still warming up from 0: allowed


def test_labels_are_the_answer_only(tiny_model, lines):
    processor = engine_mod.load_processor(str(tiny_model / "base"))
    from gpu_worker.data import DataSpec, Samples

    samples = Samples(DataSpec(source=str(lines)))
    rows = [{"image": samples.image(i), "text": samples.text(i)} for i in (0, 3)]
    collate = AnswerCollator(processor, None)
    batch = collate(rows)
    tok = processor.tokenizer
    for i, row in enumerate(rows):
        keep = batch["labels"][i] != -100
        assert tok.decode(batch["labels"][i][keep]) == row["text"] + tok.eos_token
        answer = batch["input_ids"][i][keep]
        assert torch.equal(answer, batch["labels"][i][keep])  # labels line up with the inputs
        image_id = tok.convert_tokens_to_ids(processor.image_token)
        assert not bool((batch["labels"][i] == image_id).any())
        n = int(batch["attention_mask"][i].sum())
        assert not bool(keep[n:].any())  # padding is masked
        assert bool((batch["mm_token_type_ids"][i] == 1).sum() > 0)
    with pytest.raises(PlaceholderError, match="holds the image token"):
        collate([{"image": rows[0]["image"], "text": processor.image_token}])


def test_holdout_rows_are_datasets_own_test_split():
    import datasets

    rows = datasets.Dataset.from_dict({"text": [f"line {i}" for i in range(40)]})
    want = rows.train_test_split(test_size=0.1, seed=42)
    train, test = holdout_split(40, {"test_size": 0.1, "seed": 42})
    assert [f"line {i}" for i in test] == want["test"]["text"]
    assert [f"line {i}" for i in train] == want["train"]["text"]


def test_training_playbooks_are_validated():
    doc = {"model": {"base": "b"}, "data": {"source": "d", "holdout": {"test_size": 0.1,
           "seed": 42}}, "train": {}}  # fmt: skip
    spec = parse_train(doc)
    assert spec.train["steps"] == 500 and spec.lora["r"] == 16 and spec.doc["outputs"]
    assert parse_train(spec.doc).doc == spec.doc  # a full spec resolves to itself
    cases = [
        ({"train": {"setps": 1}}, r"train.setps: unknown setting \(did you mean 'steps'"),
        ({"train": {"lr": -1}}, "train.lr: expected a number"),
        ({"train": {"scheduler": "cosinus"}}, "train.scheduler: expected one of"),
        ({"lora": {"target_modules": 3}}, "lora.target_modules"),
        ({"data": {"source": "d"}}, "data.holdout: missing"),
        ({"model": {"base": "b", "prompt_format": "raw"}}, "a raw prompt must contain"),
        ({"methods": {"g": {"kind": "greedy"}}}, "no `methods:`"),
    ]
    for change, message in cases:
        with pytest.raises(PlaybookError, match=message):
            parse_train({**doc, **change})
    default = re.compile(train_mod.lora_targets(None))
    assert default.fullmatch("model.language_model.layers.0.mlp.gate_proj")
    assert not default.fullmatch("model.visual.blocks.0.mlp.gate_proj")
    assert not re.compile(train_mod.lora_targets(["qkv"])).fullmatch("model.visual.blocks.0.qkv")


def test_orch_runs_the_train_command_for_a_train_playbook():
    from orchestrator.playbooks import BUNDLED, TRAIN_COMMAND, Resolved
    from orchestrator.scripts import job_command

    doc = yaml.safe_load((BUNDLED / "train.yaml").read_text())
    full = parse_train(doc, "train").doc
    assert full["outputs"] == ["checkpoints/"] and full["model"]["prompt_format"] == "chat"
    book_ = Resolved("train", full)
    assert book_.command == TRAIN_COMMAND and book_.train and book_.own_command
    assert str(job_command(book_.command, resume=True)).endswith(
        '-m gpu_worker train "$D"/playbook.yaml --out "$D" --resume'
    )
    assert Resolved("q", {"methods": {}}).command.startswith("{python} -m gpu_worker run")
