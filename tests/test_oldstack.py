"""Checkpoints written by the Odia user's training stacks decode exactly as those stacks decoded.

The fixtures under `tests/fixtures/oldstack/` were made by `scripts/make_old_checkpoints.py`
(transformers 4.51 + peft 0.15 and 4.57 + peft 0.18, the user's LoRA recipe); each variant's
`expected.json` holds the strings that stack's own peft `generate` gave on 8 sample images.
Here the worker loads the same folders on the fast path (which must engage: merged/stacked) and on
peft, and must give identical strings for greedy on every checkpoint and the base, beam 3 and the
logits ensemble, in the user's raw prompt format (and the chat format where recorded).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from gpu_worker import engine as engine_mod
from gpu_worker import prompts
from gpu_worker.contract.spec import PlaybookError, parse_playbook
from gpu_worker.fastpath.adapters import LoadError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "oldstack"
VARIANTS = ["t451/safetensors", "t451/bin", "t457/resized", "t457/bin", "t457/safetensors"]
RAW = "{image} "
TIE = 2e-3  # a logit margin below this may fall either way between two stacks' float arithmetic


def expected(variant: str) -> dict:
    return json.loads((FIXTURES / variant / "expected.json").read_text(encoding="utf-8"))


def load(variant: str, lora: str, folders: list[str] | None = None, fmt: str = "raw"):
    exp = expected(variant)
    folders = folders or [str(FIXTURES / variant / c) for c in exp["checkpoints"]]
    prompt = RAW if fmt == "raw" else engine_mod.DEFAULT_PROMPT
    base = str(FIXTURES / variant.split("/")[0] / "base")
    return engine_mod.load(base, folders, device="cpu", lora=lora, prompt=prompt, prompt_format=fmt)


@pytest.fixture(scope="module")
def images():
    names = expected(VARIANTS[0])["images"]
    return [Image.open(ROOT / "data" / "sample" / n).convert("RGB") for n in names]


def decode_all(eng, exp: dict, images: list) -> dict:
    """The worker's strings for every entry expected.json records."""
    gen = {"max_new_tokens": exp["max_new_tokens"], "do_sample": False, "num_beams": 1}
    out = {"base": eng.generate(images, [None] * len(images), **gen)}
    for name in eng.adapters:
        out[name] = eng.generate(images, [name] * len(images), **gen)
    beam = dict(gen, num_beams=3, early_stopping=True)
    out["beam3"] = eng.generate(images, [eng.adapters[-1]] * len(images), **beam)
    per_image = eng.generate_ensemble(images, eng.adapters, logits=True, **gen)
    out["logits"] = [texts[0] for texts in per_image]
    return out


def assert_identical(got: dict, want: dict, where: str, eng=None, images=()) -> list[str]:
    """Every string identical; a greedy string may differ only where the two stacks' float
    arithmetic parts at a near-tie (`near_tie`). Returns those near-tie cases."""
    ties = []
    for key, strings in want.items():
        if key.endswith("_error") or strings is None:  # the old stack itself failed there
            continue
        for i, (ours, theirs) in enumerate(zip(got[key], strings, strict=True)):
            if ours == theirs:
                continue
            greedy = key == "base" or key in eng.adapters
            assert greedy and near_tie(eng, images[i], key, theirs), (
                f"{where}: {key} image {i}: {ours!r} != {theirs!r}"
            )
            ties.append(f"{key}/{i}")
    return ties


@torch.inference_mode()
def near_tie(eng, image, key: str, theirs: str) -> bool:
    """Our greedy decode parts from `theirs` at a step where their token scored within `TIE` of
    our best (stack numerics, e.g. attention kernels, not a loading error)."""
    tok = eng.processor.tokenizer
    adapter = None if key == "base" else key
    batch = eng.inputs([image])
    extra = {}
    if eng.mode == "peft":
        extra["adapter_names"] = [adapter or engine_mod.BASE]
    else:
        eng.bank.merge(adapter)
    out = eng.model.generate(
        **batch, **extra, max_new_tokens=10, do_sample=False, output_scores=True,
        return_dict_in_generate=True,
    )  # fmt: skip
    seq = out.sequences[0, batch["input_ids"].shape[1] :]
    for step in range(len(seq)):
        before = tok.decode(seq[:step], skip_special_tokens=True)
        after = tok.decode(seq[: step + 1], skip_special_tokens=True)
        ended = int(seq[step]) == tok.eos_token_id
        if theirs.startswith(after) and not (ended and after != theirs):
            continue
        char = theirs[len(before)] if len(theirs) > len(before) else None
        need = tok.convert_tokens_to_ids(char) if char else tok.eos_token_id
        scores = out.scores[step][0]
        return float(scores.max() - scores[need]) < TIE
    return False


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lora", ["fast", "peft"])
def test_identical_to_training_stack(variant, lora, images):
    exp = expected(variant)
    eng = load(variant, lora)
    if lora == "fast":
        assert eng.mode == "fast" and eng.bank is not None, eng.peft_reason
    else:
        assert eng.mode == "peft"
    if "resize" in exp["flags"]:
        assert eng.model.get_input_embeddings().weight.shape[0] < 256
        assert any("resized" in n for n in eng.notes)
    got = decode_all(eng, exp, images)
    ties = assert_identical(got, exp["strings"]["raw"], f"{variant} {lora}", eng, images)
    if "chat" in exp["strings"]:
        eng.prompt_format, eng.prompt = "chat", engine_mod.DEFAULT_PROMPT
        got = decode_all(eng, exp, images)
        ties += assert_identical(got, exp["strings"]["chat"], f"{variant} chat", eng, images)
    assert len(ties) <= 1, ties  # 3+ models x 8 images: a near-tie is rare


def _copy(variant: str, tmp_path: Path) -> Path:
    src = FIXTURES / variant / "checkpoint-50"
    dst = tmp_path / "checkpoint-50"
    shutil.copytree(src, dst)
    return dst


def _rewrite(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "adapter_model.safetensors"
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


@pytest.mark.parametrize("lora", ["fast", "peft"])
def test_tensor_landing_nowhere_names_file_and_key(lora, tmp_path):
    folder = _copy("t451/safetensors", tmp_path)
    key = "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"
    _rewrite(folder, lambda t: t.__setitem__(key, torch.zeros(32, 64)))
    with pytest.raises(LoadError, match=rf"adapter_model.safetensors: tensor {key}"):
        load("t451/safetensors", lora, [str(folder)])


def test_trained_embeddings_refused_in_one_line(tmp_path):
    folder = _copy("t457/resized", tmp_path)
    key = "base_model.model.lm_head.weight"

    def train(tensors):
        tensors[key] = tensors[key] + 0.01

    _rewrite(folder, train)
    with pytest.raises(LoadError, match=rf"{key} holds trained embeddings") as err:
        load("t457/resized", "fast", [str(folder)])
    assert "\n" not in str(err.value)


def test_raw_prompt_renders_exactly(tmp_path):
    eng = load("t457/safetensors", "fast", [])
    text = prompts.prompt_text(eng.processor, "<|vision_start|>{image}<|vision_end|> odia: ", "raw")
    assert text == "<|vision_start|><|image_pad|><|vision_end|> odia: "
    assert prompts.prompt_text(eng.processor, RAW, "raw") == "<|image_pad|> "
    batch = eng.preprocess([Image.new("RGB", (56, 28), "white")], RAW)
    ids = batch["input_ids"][0].tolist()
    pad = eng.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n = int(batch["image_grid_thw"].prod()) // 4
    assert ids == [pad] * n + [eng.processor.tokenizer.convert_tokens_to_ids(" ")]
    # transformers 4.x gave a row without <|vision_start|> text positions (0, 1, 2 ... on all
    # three M-RoPE axes, image tokens included); 5.x would give its image tokens a 3-D grid
    rope = eng.model.model.get_rope_index
    keys = ("input_ids", "image_grid_thw", "attention_mask", "mm_token_type_ids")
    pos, _ = rope(**{k: batch[k] for k in keys})
    assert pos[:, 0].tolist() == [list(range(len(ids)))] * 3
    framed = eng.preprocess([Image.new("RGB", (56, 28), "white")], "<|vision_start|>{image} ")
    pos, _ = rope(**{k: framed[k] for k in keys})
    length = framed["input_ids"].shape[1]
    assert pos[:, 0].tolist() != [list(range(length))] * 3  # a 3-D grid for the framed image
    chat = prompts.prompt_text(eng.processor, None, "chat")
    assert chat.startswith("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>")
    assert prompts.DEFAULT_PROMPT in chat


def test_raw_prompt_without_image_is_a_playbook_error():
    doc = {
        "data": {"source": "data/sample"},
        "model": {"base": "/x", "prompt": "text only", "prompt_format": "raw"},
        "methods": {"greedy": {"kind": "greedy"}},
    }
    with pytest.raises(PlaybookError, match=r"model.prompt: .*\{image\}"):
        parse_playbook(doc)
    doc["model"]["prompt_format"] = "plain"
    with pytest.raises(PlaybookError, match="model.prompt_format"):
        parse_playbook(doc)


def test_lora_path_per_method_in_results(tmp_path):
    import yaml

    from gpu_worker.runner import run

    playbook = {
        "name": "oldstack",
        "model": {
            "base": str(FIXTURES / "t451" / "base"),
            "checkpoints": str(FIXTURES / "t451" / "bin"),
            "prompt": RAW,
            "prompt_format": "raw",
            "device": "cpu",
        },
        "data": {"source": str(ROOT / "data" / "sample"), "n_samples": 2},
        "generation": {"max_new_tokens": 4, "batch_size": 2},
        "methods": {
            "greedy": {"kind": "greedy"},
            "base": {"kind": "greedy", "adapter": "base"},
            "ensemble": {"kind": "ensemble", "vote": "logits"},
        },
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(playbook))
    logged: list[str] = []
    results = run(path, tmp_path / "out", root=str(ROOT), log=logged.append)
    assert results["greedy"]["lora_path"] == "merged"
    assert results["base"]["lora_path"] == "base"
    assert results["ensemble"]["lora_path"] == "stacked"
    assert any("greedy" in line and "LoRA path: merged" in line for line in logged)
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["ensemble"]["lora_path"] == "stacked"


def test_every_qwen25vl_layout_maps_onto_the_model():
    from transformers import AutoConfig, AutoModelForImageTextToText

    from gpu_worker.fastpath.adapters import key_renamer

    config = AutoConfig.from_pretrained(FIXTURES / "t451" / "base")
    rename = key_renamer(AutoModelForImageTextToText.from_config(config))
    layer = "model.language_model.layers.1.self_attn.q_proj"
    for saved, ours in {
        "model.layers.1.self_attn.q_proj": layer,  # transformers < 4.52
        "language_model.model.layers.1.self_attn.q_proj": layer,
        layer: layer,  # 4.52 and later, 5.x
        "visual.blocks.0.attn.qkv": "model.visual.blocks.0.attn.qkv",
        "model.visual.blocks.0.attn.qkv": "model.visual.blocks.0.attn.qkv",
        "model.embed_tokens": "model.language_model.embed_tokens",
        "language_model.lm_head": "lm_head",
        "lm_head": "lm_head",
    }.items():
        assert rename(saved) == ours, saved
