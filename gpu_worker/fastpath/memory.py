"""Decode a batch in smaller calls when its rows would not fit the free memory, instead of failing.

- `bytes_per_row(config, tokens, dtype)`: one decoded row's memory: its key/value cache,
  layers x kv heads x head dim x tokens x 2 (keys and values) x dtype size, plus the prefill's
  working memory for that row (per prompt token: the MLP's gate, up, activation and product
  at the intermediate size, and a few hidden-size tensors) and the float32 scores over the
  vocabulary a step holds (x5: logits, log-probs, processed scores, beam candidates, top-k).
- `prompt_tokens(engine, images, prompt)`: the batch's prompt length without running the
  processor: the template's text tokens plus the longest image's tokens (the image processor's
  own count from the image size), rounded up to `shapes.PAD_TO` when static.
- `budget(device, given)`: the bytes a call may use: `given` when set (tests, a user's cap),
  else on CUDA the free memory (`torch.cuda.mem_get_info`, plus what torch's caching allocator
  reserved and does not use) x `FREE_FRACTION`; on CPU None: no cap.
- `images_per_call(images, rows_per_image, per_row, budget)`: how many images one call takes so
  that images x rows_per_image rows (rows = images x beams x checkpoints) fit (at least 1).
- `split_calls(call, n, limit)`: `call(start, stop)` over consecutive slices of at most `limit`
  images, outputs concatenated in order; on an out-of-memory error the slice size is halved and
  the failed slice retried, once more only (a second failure propagates).
Rows never interact in greedy, beam or ensemble decoding (beams and the k rows of an image stay
in one call), so a split run gives the unsplit outputs; sampling draws in another order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import shapes

FREE_FRACTION = 0.8  # of the free CUDA memory: the allocator's fragmentation and kernels' workspace
SCORE_COPIES = 5
MLP_COPIES, HIDDEN_COPIES = 4, 4


def _size(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def kv_bytes_per_token(config, dtype) -> int:
    """Key + value cache bytes of one row per position, from the text model's config."""
    text = getattr(config, "text_config", config)
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return text.num_hidden_layers * kv_heads * head_dim * 2 * _size(dtype)


def bytes_per_row(config, prompt: int, new_tokens: int, dtype) -> int:
    """One row's cache over prompt + new tokens, its prefill working memory and step scores."""
    text = getattr(config, "text_config", config)
    cache = kv_bytes_per_token(config, dtype) * (prompt + new_tokens)
    width = MLP_COPIES * text.intermediate_size + HIDDEN_COPIES * text.hidden_size
    prefill = prompt * width * _size(dtype)
    scores = SCORE_COPIES * text.vocab_size * 4
    return cache + prefill + scores


def prompt_tokens(engine, images: list, prompt: str | None = None) -> int:
    """The left-padded prompt length of a batch of `images` (see module doc)."""
    from ..prompts import prompt_text

    processor = engine.processor
    text = prompt_text(processor, prompt or engine.prompt, engine.prompt_format)
    words = len(processor.tokenizer(text)["input_ids"]) - 1  # less the one image pad
    image = processor.image_processor
    merge = getattr(image, "merge_size", 2) ** 2
    longest = max(image.get_number_of_image_patches(i.height, i.width, {}) for i in images)
    tokens = words + longest // merge
    return -(-tokens // shapes.PAD_TO) * shapes.PAD_TO if engine.static else tokens


def budget(device: str, given: int | None = None) -> int | None:
    """Bytes one call may use (None: no cap)."""
    if given is not None:
        return given
    if device.startswith("cuda"):
        where = torch.device(device)
        free, _ = torch.cuda.mem_get_info(where)  # plus what torch's allocator holds unused
        held = torch.cuda.memory_reserved(where) - torch.cuda.memory_allocated(where)
        return int((free + held) * FREE_FRACTION)
    return None


def images_per_call(images: int, rows_per_image: int, per_row: int, cap: int | None) -> int:
    """The most images (at least 1) whose rows fit `cap` bytes; all of them when no cap."""
    if cap is None:
        return images
    return max(1, min(images, cap // max(1, per_row * rows_per_image)))


def split_calls(call: Callable[[int, int], list], n: int, limit: int) -> list:
    """`call(start, stop)` over slices of at most `limit`, halved once on out-of-memory."""
    out: list = []
    start, retried = 0, False
    while start < n:
        stop = min(n, start + limit)
        try:
            out.extend(call(start, stop))
        except torch.OutOfMemoryError:
            if retried or stop - start == 1:
                raise
            retried, limit = True, max(1, (stop - start) // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start = stop
    return out


def plan_call(engine, images: list, rows_per_image: int, gen: dict, prompt=None) -> int:
    """How many of `images` one call of `engine` decodes (`len(images)`: no split)."""
    cap = budget(engine.device, engine.memory_budget)
    if cap is None or not images:
        return len(images)
    model = engine.model
    dtype = next(model.parameters()).dtype
    new = int(gen.get("max_new_tokens") or model.generation_config.max_new_tokens or 0)
    per_row = bytes_per_row(model.config, prompt_tokens(engine, images, prompt), new, dtype)
    limit = images_per_call(len(images), rows_per_image, per_row, cap)
    if engine.static and limit < len(images):  # a call is padded up to a bucket: stay within one
        limit = max(b for b in shapes.buckets(engine.batch_size) if b <= limit)
    return limit
