"""A small Qwen2.5-VL-architecture model, made here with random weights: nothing is downloaded.

`build(folder)` writes what a Trainer run would leave behind:

    folder/base/                  config, weights, tokenizer, processor and chat template
    folder/checkpoints/checkpoint-50 ... checkpoint-250/   LoRA adapters (peft format)

The tokenizer is a character-level one over Odia, Latin and digits plus the special tokens the
Qwen2.5-VL processor needs. LoRA weights are random (`init_lora_weights=False`), so the adapters
disagree with each other like real checkpoints do, and they touch only the language model (a
regex on module names: the vision tower has layers of the same names). Tests and the demo use it;
`python -m gpu_worker tiny DIR` makes one by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Odia block (U+0B00..U+0B7F), printable ASCII, and the whitespace the chat template uses.
ALPHABET = [chr(c) for c in range(0x0B00, 0x0B80)] + [chr(c) for c in range(0x20, 0x7F)] + ["\n"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHECKPOINT_STEPS = (50, 100, 150, 200, 250)
# Lines are small images: at most 32 merged image tokens each keeps the tiny model quick.
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 32
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"


def make_tokenizer():
    """A character-level fast tokenizer with Qwen's special tokens; no files from anywhere."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + ALPHABET)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    return tok


def make_processor():
    """The image-only Qwen2.5-VL processor (see `engine.ImageOnlyQwenVLProcessor`)."""
    from transformers import Qwen2VLImageProcessorPil

    from .engine import ImageOnlyQwenVLProcessor

    image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    return ImageOnlyQwenVLProcessor(
        image_processor=image_processor, tokenizer=make_tokenizer(), chat_template=CHAT_TEMPLATE
    )


def make_config(tokenizer, size: str = "tiny"):
    """A Qwen2.5-VL config: `tiny` (for tests, CPU) or `3b` (Qwen2.5-VL-3B's shapes)."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    if size == "3b":
        text = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                    num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                     "mrope_section": [16, 24, 24]})  # fmt: skip
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                      out_hidden_size=2048)  # fmt: skip
    else:
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                     "mrope_section": [2, 3, 3]})  # fmt: skip
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                      out_hidden_size=64, fullatt_block_indexes=[1])  # fmt: skip
    text.update(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        max_position_embeddings=4096,
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=size == "3b",  # as Qwen2.5-VL-3B: 3.75B parameters
    )


def build(folder: str | Path, seed: int = 0, steps=CHECKPOINT_STEPS, size: str = "tiny") -> Path:
    """Write a base model and one LoRA adapter per step under `folder`; return `folder`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    folder = Path(folder)
    base_dir, ckpt_dir = folder / "base", folder / "checkpoints"
    torch.manual_seed(seed)
    processor = make_processor()
    config = make_config(processor.tokenizer, size)
    if size == "3b":  # made in bf16: 7.5 GB of memory and disk instead of 15 (24 GB machines)
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    else:
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.eval()
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.save_pretrained(base_dir)
    processor.save_pretrained(base_dir)
    for name in ("processor_config.json", "tokenizer_config.json"):  # name the stock class,
        path = base_dir / name  # as a real Qwen2.5-VL folder does
        path.write_text(path.read_text().replace("ImageOnlyQwenVLProcessor", "Qwen2_5_VLProcessor"))
    for step in steps:
        torch.manual_seed(seed * 1000 + step)
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False)
        peft_model = get_peft_model(model, lora)
        out = ckpt_dir / f"checkpoint-{step}"
        peft_model.save_pretrained(out)
        cfg_path = out / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = "Qwen/Qwen2.5-VL-3B-Instruct"  # as a real run records
        cfg_path.write_text(json.dumps(cfg, indent=2))
        model = peft_model.unload()
    return folder
