"""Our decode loop (`fastpath/decode.py`, `beam.py`, `kvcache.py`) against transformers' own
`generate` on the small model in float32: greedy, beam search (length penalty, early stopping),
seeded sampling and the ensembles token for token, in several buckets and at two prompt
lengths; static caches that keep their addresses across beam steps and across calls."""

import functools

import pytest
import torch

from gpu_worker import engine as engine_mod
from gpu_worker.data import DataSpec, Samples
from gpu_worker.fastpath import decode, kvcache
from tests.conftest import SAMPLES

LONG_PROMPT = "Read the line of text in this image and write it out exactly, nothing else."


@pytest.fixture(scope="module")
def setup(tiny_model):
    samples = Samples(DataSpec(source=str(SAMPLES)))
    images = [samples.image(i) for i in (0, 5, 9)]
    eng = engine_mod.load(
        str(tiny_model / "base"), engine_mod.expand_checkpoints(str(tiny_model / "checkpoints"))
    )
    tok = eng.processor.tokenizer
    # '=' and 'ଯ' are frequent outputs of the random model: as end-of-sequence tokens, rows and
    # beams stop at different steps (its real eos never comes within a few tokens)
    eos = [tok.convert_tokens_to_ids("="), tok.convert_tokens_to_ids("ଯ")]
    return eng, images, eos


def _modes(eos: list[int]) -> dict:
    short = {"max_new_tokens": 8, "eos_token_id": eos}
    return {
        "greedy": {**short, "do_sample": False},
        "beam-early": {**short, "do_sample": False, "num_beams": 3, "early_stopping": True},
        "beam-penalty": {**short, "num_beams": 2, "length_penalty": 0.5, "eos_token_id": eos[0]},
        "beam-never": {**short, "num_beams": 2, "early_stopping": "never", "length_penalty": 2.0},
        "sample": {**short, "do_sample": True, "temperature": 1.5, "top_p": 0.9},
    }


def _run(eng, images, adapter, gen, prompt=None):
    return eng.generate(images, [adapter] * len(images), prompt=prompt, seed=7, **gen)


def test_every_mode_gives_transformers_tokens_in_any_bucket(setup):
    eng, images, eos = setup
    last, modes = eng.adapters[-1], _modes(eos)
    eng.static = False  # transformers' own loops, unpadded batch
    want = {m: _run(eng, images, last, g) for m, g in modes.items()}
    want_long = _run(eng, images[:1], last, modes["beam-early"], LONG_PROMPT)
    five = images + images[:2]
    want_sample_5 = _run(eng, five, last, modes["sample"])
    assert len({tuple(v) for v in want.values()}) >= 3  # the modes really differ
    assert any("=" not in t for t in want["greedy"]) and any(
        t.endswith("=") for t in want["greedy"]
    )
    eng.use_static(compiled=False, batch_size=4)  # 3 rows in a bucket of 4, 1 in 1
    assert {m: _run(eng, images, last, g) for m, g in modes.items()} == want
    assert _run(eng, images[:1], last, modes["beam-early"], LONG_PROMPT) == want_long
    eng.use_static(compiled=False, batch_size=8)  # 5 rows in a bucket of 8: 3 padding rows
    assert _run(eng, five, last, modes["sample"]) == want_sample_5
    eng.use_static(compiled=True, batch_size=8, backend="eager")  # compile on: the same draws
    assert _run(eng, five, last, modes["sample"]) == want_sample_5


def test_ensembles_go_through_the_loop(setup, monkeypatch):
    eng, images, eos = setup
    names, gen = eng.adapters[:2], {"max_new_tokens": 6, "eos_token_id": eos}
    beam = {**gen, "num_beams": 2, "early_stopping": True}
    eng.static = False
    want = [eng.generate_ensemble(images, names, logits=v, **gen) for v in (False, True)]
    want_combined = eng.generate_ensemble(images, names, **beam)
    eng.use_static(compiled=False, batch_size=4)
    calls = []
    run = eng.decoder.run
    spy = functools.wraps(run)(lambda *a, **kw: calls.append(1) or run(*a, **kw))
    monkeypatch.setattr(eng.decoder, "run", spy)  # generate reads its signature
    assert [eng.generate_ensemble(images, names, logits=v, **gen) for v in (False, True)] == want
    assert eng.generate_ensemble(images, names, **beam) == want_combined
    assert len(calls) == 3  # stacked LoRA, `vote: logits` and beam over checkpoints: our loop


def test_cache_keeps_its_addresses_across_beam_steps_and_calls(setup, monkeypatch):
    eng, images, eos = setup
    gen = {"max_new_tokens": 8, "num_beams": 3, "eos_token_id": eos, "early_stopping": True}
    eng.static = False
    want = _run(eng, images, eng.adapters[0], gen)
    eng.use_static(compiled=True, batch_size=4, backend="eager")  # traced by dynamo
    seen, moved = set(), []
    reorder = kvcache.reorder_

    def watched(cache, rows, filled):
        seen.add(tuple(kvcache.addresses(cache)))
        moved.append(not torch.equal(rows.cpu(), torch.arange(len(rows))))
        reorder(cache, rows, filled)
        seen.add(tuple(kvcache.addresses(cache)))

    monkeypatch.setattr(kvcache, "reorder_", watched)
    torch._dynamo.utils.counters.clear()
    assert _run(eng, images, eng.adapters[0], gen) == want
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the step was traced
    first = eng.decoder.last_cache
    torch._dynamo.utils.counters.clear()
    assert _run(eng, images, eng.adapters[0], gen) == want
    assert eng.decoder.last_cache is first and len(seen) == 1  # one address per tensor, always
    assert len(moved) >= 2 * 5 and any(moved)  # beams really were reordered between steps
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 0  # no retrace on reuse


def test_reorder_copies_the_chosen_rows_in_place(setup):
    eng, _, _ = setup
    pool = kvcache.CachePool(limit=1)
    cache = pool.get(eng.model, rows=4, length=16)
    for layer in cache.layers:
        layer.keys.normal_(), layer.values.normal_()
    before = [t.clone() for layer in cache.layers for t in (layer.keys, layer.values)]
    ptrs = kvcache.addresses(cache)
    rows = torch.tensor([2, 2, 0, 3])
    kvcache.reorder_(cache, rows, filled=10)
    after = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    assert kvcache.addresses(cache) == ptrs
    for old, new in zip(before, after, strict=True):
        assert torch.equal(new[:, :, :10], old[rows, :, :10])
        assert torch.equal(new[:, :, 10:], old[:, :, 10:])  # beyond the filled part: untouched
    assert pool.get(eng.model, rows=4, length=16) is cache and kvcache.addresses(cache) == ptrs
    assert all(not t.any() for t in after)  # reset in place for the next call
    assert pool.get(eng.model, rows=2, length=16) is not cache and len(pool.caches) == 1


def test_end_of_sequence_read_every_k_steps_changes_nothing(setup, monkeypatch):
    eng, images, eos = setup
    last, modes = eng.adapters[-1], _modes(eos)
    eng.use_static(compiled=False, batch_size=4)
    steps = []
    step = eng.decoder.step
    monkeypatch.setattr(eng.decoder, "step", lambda *a: steps.append(1) or step(*a))
    picked, images = ("greedy", "beam-early"), [images[0], images[2]]  # both stop in 2 tokens
    every_k = [_run(eng, images, last, modes[m]) for m in picked]
    runs_k = len(steps)
    monkeypatch.setattr(decode, "EOS_CHECK_EVERY", 1)
    steps.clear()
    assert [_run(eng, images, last, modes[m]) for m in picked] == every_k
    assert len(steps) < runs_k  # checking each step stops sooner; the texts are the same
    assert not decode.supports({"do_sample": True, "num_beams": 2})
    assert not decode.supports({"max_new_tokens": 4, "stop_strings": ["x"]})


def test_peft_path_in_a_padded_bucket(tiny_model, setup):
    _, images, _ = setup
    ckpts = engine_mod.expand_checkpoints(str(tiny_model / "checkpoints"))
    eng = engine_mod.load(str(tiny_model / "base"), ckpts, lora="peft")
    mixed, gen = [None, eng.adapters[1], eng.adapters[3]], {"max_new_tokens": 4}
    want = eng.generate(images, mixed, **gen)
    eng.use_static(compiled=False, batch_size=4)  # adapter names padded with the batch
    assert eng.generate(images, mixed, **gen) == want
