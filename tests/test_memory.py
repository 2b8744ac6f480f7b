"""Decoding in smaller calls when rows x cache would not fit (fastpath/memory.py): the estimate at
Qwen2.5-VL-3B's shapes (`combined` at batch 128 is split, greedy is not), the halving on
out-of-memory, and split runs on the tiny model giving the unsplit outputs."""

import pytest
import torch

from gpu_worker import engine as engine_mod
from gpu_worker import tiny
from gpu_worker.data import DataSpec, Samples
from gpu_worker.fastpath import memory
from tests.conftest import SAMPLES

GEN = {"max_new_tokens": 6, "do_sample": False}


def test_combined_at_batch_128_is_split_at_3b_shapes():
    config = tiny.make_config(tiny.make_tokenizer(), "3b")
    assert memory.kv_bytes_per_token(config, torch.bfloat16) == 36 * 2 * 128 * 2 * 2
    per_row = memory.bytes_per_row(config, prompt=128, new_tokens=64, dtype=torch.bfloat16)
    cap = 57 * 10**9  # an 80 GB H100 less the 3B weights (7.5 GB) and context, x 0.8
    assert memory.images_per_call(128, 1, per_row, cap) == 128  # greedy: one call
    assert memory.images_per_call(128, 5, per_row, cap) == 128  # beam 5 / ensemble of 5
    combined = memory.images_per_call(128, 25, per_row, cap)  # beam 5 x 5 checkpoints
    assert 16 <= combined < 128 and combined * 25 * per_row <= cap
    assert memory.images_per_call(128, 25, per_row, None) == 128  # no cap (CPU)
    assert memory.images_per_call(4, 25, per_row, 1) == 1  # never less than one image


def test_out_of_memory_halves_the_slices_once():
    calls = []

    def call(start, stop, most=4):
        calls.append((start, stop))
        if stop - start > most:
            raise torch.OutOfMemoryError("CUDA out of memory (test)")
        return list(range(start, stop))

    assert memory.split_calls(call, 10, 8) == list(range(10))
    assert calls == [(0, 8), (0, 4), (4, 8), (8, 10)]
    with pytest.raises(torch.OutOfMemoryError):  # still too big after halving: no third try
        memory.split_calls(lambda a, b: call(a, b, most=2), 10, 8)


def test_split_calls_give_the_unsplit_outputs(tiny_model):
    eng = engine_mod.load(
        str(tiny_model / "base"), engine_mod.expand_checkpoints(str(tiny_model / "checkpoints"))
    )
    samples = Samples(DataSpec(source=str(SAMPLES)))
    images = [samples.image(i) for i in range(4)]
    last, names = eng.adapters[-1], eng.adapters[:3]
    want = {
        "greedy": eng.generate(images, [last] * 4, **GEN),
        "beam": eng.generate(images, [last] * 4, num_beams=2, **GEN),
        "combined": eng.generate_ensemble(images, names, num_beams=2, **GEN),
    }
    calls = []
    hook = eng.model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    prompt = memory.prompt_tokens(eng, images)
    per_row = memory.bytes_per_row(eng.model.config, prompt, GEN["max_new_tokens"], torch.float32)
    eng.memory_budget = per_row * 2 * len(names) * 2  # two images of the combined method
    try:
        assert memory.plan_call(eng, images, 2 * len(names), GEN) == 2
        assert eng.generate_ensemble(images, names, num_beams=2, **GEN) == want["combined"]
        assert len(calls) == 2  # 4 images, 2 per call: the vision tower ran twice
        calls.clear()
        assert eng.generate(images, [last] * 4, num_beams=2, **GEN) == want["beam"]
        assert len(calls) == 1  # 2 rows per image: the 4 images fit one call
        eng.memory_budget = per_row  # one row: one image per call
        assert eng.generate(images, [last] * 4, **GEN) == want["greedy"]
        assert len(calls) == 1 + 4
    finally:
        hook.remove()
