"""Make one old stack's test fixtures: run INSIDE a venv holding that stack (transformers 4.5x,
peft 0.1x), by `make_old_checkpoints.py`. Stand-alone on purpose: it imports nothing from
`gpu_worker` (whose code is written against transformers 5) and uses only this stack's API.

    python oldstack_builder.py OUT_DIR IMAGES_DIR VARIANT[:FLAGS] ...

writes `OUT_DIR/base/` (a tiny Qwen2.5-VL saved as this stack saves it: character-level tokenizer
over Odia/ASCII with Qwen's special tokens, hidden 64, 2 layers, config vocabulary 256 > the
tokenizer's, as 151,936 > 151,665 for the 3B) and per variant `OUT_DIR/VARIANT/checkpoint-50`,
`checkpoint-100` made with the Odia user's recipe: optionally `resize_token_embeddings(len(tok))`,
then `LoraConfig(r=32, lora_alpha=64, target_modules=["q_proj", "v_proj"], bias="none",
task_type="CAUSAL_LM")`, random non-zero LoRA weights per checkpoint, saved in safetensors or
`.bin`. Beside them `expected.json`: what this stack's own peft `generate` gives on the images.
FLAGS (comma-separated): `bin` (safe_serialization=False), `resize`, `chat` (also the chat format).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import torch
import transformers
from PIL import Image

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
ALPHABET = [chr(c) for c in range(0x0B00, 0x0B80)] + [chr(c) for c in range(0x20, 0x7F)] + ["\n"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_PROMPT = "Extract the text in this image."
RAW_TEXT = "<|image_pad|> "  # the user's training format: no chat template, nothing after
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 32
VOCAB = 256
STEPS = (50, 100)
MAX_NEW_TOKENS = 10
N_IMAGES = 8
BASE_ID = "Qwen/Qwen2.5-VL-3B-Instruct"


def make_tokenizer():
    """Character-level fast tokenizer with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + ALPHABET)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>", padding_side="left",
    )  # fmt: skip
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_config(tok):
    """A tiny Qwen2.5-VL config in this stack's spelling (flat text settings, rope_scaling)."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=4096, rope_theta=1e6,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                           out_hidden_size=64, fullatt_block_indexes=[1]),
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"], image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False,
    )  # fmt: skip


def build_base(out: Path):
    """Save the base folder as this stack saves it; return (tokenizer, image processor)."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor

    torch.manual_seed(0)
    tok = make_tokenizer()
    model = Qwen2_5_VLForConditionalGeneration(make_config(tok)).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    improc = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    improc.save_pretrained(out)
    (out / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    return tok, improc


def load_base(base: Path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(base, torch_dtype=torch.float32)


def make_checkpoints(base: Path, out: Path, flags: set, tok, seed: int) -> list[Path]:
    """The user's recipe; one checkpoint folder per step with its own random LoRA weights."""
    from peft import LoraConfig, get_peft_model

    folders = []
    for step in STEPS:
        model = load_base(base)
        if "resize" in flags:
            model.resize_token_embeddings(len(tok))
        torch.manual_seed(seed * 1000 + step)
        config = LoraConfig(
            r=32,
            lora_alpha=64,
            target_modules=["q_proj", "v_proj"],
            bias="none",
            task_type="CAUSAL_LM",
            init_lora_weights=False,
        )
        peft_model = get_peft_model(model, config)
        with torch.no_grad():  # kaiming-random A and B are large for a 64-wide model
            for name, param in peft_model.named_parameters():
                if "lora_" in name:
                    param.mul_(0.5)
        folder = out / f"checkpoint-{step}"
        peft_model.save_pretrained(folder, safe_serialization="bin" not in flags)
        cfg_path = folder / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = BASE_ID  # as a real run records it
        cfg_path.write_text(json.dumps(cfg, indent=2))
        folders.append(folder)
    return folders


def inputs(tok, improc, image, text: str) -> dict:
    """What this stack's Qwen2.5-VL processor makes of one image and text (image pad expanded)."""
    pix = improc(images=[image], return_tensors="pt")
    n = int(pix["image_grid_thw"].prod()) // improc.merge_size**2
    ids = tok(
        text.replace("<|image_pad|>", "<|image_pad|>" * n),
        return_tensors="pt",
        return_token_type_ids=False,
    )
    return {**ids, "pixel_values": pix["pixel_values"], "image_grid_thw": pix["image_grid_thw"]}


def decode(tok, out, n_prompt: int) -> str:
    return tok.decode(out[0, n_prompt:], skip_special_tokens=True)


@torch.inference_mode()
def generate(model, tok, batches, **gen) -> list[str]:
    texts = []
    for batch in batches:
        out = model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, **gen)
        texts.append(decode(tok, out, batch["input_ids"].shape[1]))
    return texts


@torch.inference_mode()
def logits_ensemble(model, tok, names: list[str], batches) -> list[str]:
    """Greedy on the mean of the checkpoints' probabilities in log space, step by step:
    `logsumexp_a(log_softmax(logits_a)) - log k` (orch's `vote: logits`), a plain loop."""
    texts = []
    for batch in batches:
        ids = batch["input_ids"]
        for _ in range(MAX_NEW_TOKENS):
            logps = []
            for name in names:
                model.set_adapter(name)
                step = {**batch, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
                logits = model(**step).logits[0, -1].float()
                logps.append(torch.log_softmax(logits, dim=-1))
            mean = torch.logsumexp(torch.stack(logps), dim=0) - math.log(len(names))
            token = int(mean.argmax())
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            if token == tok.eos_token_id:
                break
        texts.append(decode(tok, ids, batch["input_ids"].shape[1]))
    return texts


def expected(base: Path, folders: list[Path], flags: set, tok, improc, images) -> dict:
    """This stack's own peft `generate`: greedy on every checkpoint and the base, beam 3 on the
    last, and the logits ensemble, per prompt format."""
    from peft import PeftModel

    model = load_base(base)
    if "resize" in flags:
        model.resize_token_embeddings(len(tok))
    names = [f.name for f in folders]
    model = PeftModel.from_pretrained(model, str(folders[0]), adapter_name=names[0])
    for folder in folders[1:]:
        model.load_adapter(str(folder), adapter_name=folder.name)
    model.eval()
    formats = {"raw": RAW_TEXT}
    if "chat" in flags:
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CHAT_PROMPT}]}
        ]
        formats["chat"] = tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
    result = {}
    for fmt, text in formats.items():
        batches = [inputs(tok, improc, img, text) for img in images]
        out = {}
        with model.disable_adapter():
            out["base"] = generate(model, tok, batches)
        for name in names:
            model.set_adapter(name)
            out[name] = generate(model, tok, batches)
        model.set_adapter(names[-1])
        try:  # 4.5x's beam search counts images by <|vision_start|>: the raw format breaks it
            out["beam3"] = generate(model, tok, batches, num_beams=3, early_stopping=True)
        except RuntimeError as exc:
            out["beam3"] = None
            out["beam3_error"] = str(exc).splitlines()[0]
        out["logits"] = logits_ensemble(model, tok, names, batches)
        result[fmt] = out
    return result


def main(argv: list[str]) -> None:
    import peft

    out, images_dir, variants = Path(argv[0]), Path(argv[1]), argv[2:]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tok, improc = build_base(out / "base")
    files = sorted(images_dir.glob("*.png"))[:N_IMAGES]
    images = [Image.open(f).convert("RGB") for f in files]
    for seed, spec in enumerate(variants, start=1):
        name, _, flag_text = spec.partition(":")
        flags = set(filter(None, flag_text.split(",")))
        folders = make_checkpoints(out / "base", out / name, flags, tok, seed)
        doc = {
            "stack": {"transformers": transformers.__version__, "peft": peft.__version__,
                      "torch": torch.__version__},
            "flags": sorted(flags), "images": [f.name for f in files],
            "max_new_tokens": MAX_NEW_TOKENS, "raw_prompt": RAW_TEXT, "chat_prompt": CHAT_PROMPT,
            "checkpoints": [f.name for f in folders],
            "strings": expected(out / "base", folders, flags, tok, improc, images),
        }  # fmt: skip
        (out / name / "expected.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        print(f"{out / name}: {len(folders)} checkpoints", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
