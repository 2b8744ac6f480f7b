"""The fast path on the small model in float32, against peft's reference path: merged weights,
stacked multi-adapter LoRA, bit-exact restore, `vote: logits`, static-cache buckets, settings."""

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import save_file

from gpu_worker import engine as engine_mod
from gpu_worker.contract.spec import PlaybookError, parse_playbook
from gpu_worker.data import DataSpec, Samples
from gpu_worker.fastpath import shapes
from gpu_worker.fastpath.lora import Unsupported, read_adapter
from orchestrator.playbooks import BUNDLED, apply_override
from tests.conftest import SAMPLES

GEN = {"max_new_tokens": 8, "do_sample": False}


@pytest.fixture(scope="module")
def images():
    samples = Samples(DataSpec(source=str(SAMPLES)))
    return [samples.image(i) for i in (0, 5, 9)]


@pytest.fixture(scope="module")
def engines(tiny_model):
    base = str(tiny_model / "base")
    ckpts = engine_mod.expand_checkpoints(str(tiny_model / "checkpoints"))
    ref = engine_mod.load(base, ckpts, lora="peft")
    fast = engine_mod.load(base, ckpts)
    assert (ref.mode, fast.mode) == ("peft", "fast") and ref.adapters == fast.adapters
    return ref, fast


def test_merged_and_stacked_give_peft_tokens_for_every_checkpoint(engines, images):
    ref, fast = engines
    n = len(images)
    want = {name: ref.generate(images, [name] * n, **GEN) for name in [None, *ref.adapters]}
    assert len({tuple(v) for v in want.values()}) == len(want)  # the checkpoints really differ
    for name, texts in want.items():
        assert fast.generate(images, [name] * n, **GEN) == texts, name  # merged weights
        assert fast.bank.merged == name
    stacked = fast.generate_ensemble(images, fast.adapters, **GEN)
    assert stacked == [[want[a][i] for a in fast.adapters] for i in range(n)]
    assert stacked == ref.generate_ensemble(images, ref.adapters, **GEN)
    mixed = [None, fast.adapters[1], fast.adapters[3]]  # one row each, base included
    assert fast.generate(images, mixed, **GEN) == [want[m][i] for i, m in enumerate(mixed)]


def test_stacked_vision_tower_runs_once_per_image(engines, images):
    _, fast = engines
    calls = []
    hook = fast.model.model.visual.register_forward_hook(
        lambda mod, args, kwargs_out: calls.append(args[0].shape[0])
    )
    try:
        fast.generate_ensemble(images, fast.adapters, **GEN)
    finally:
        hook.remove()
    one = fast.inputs(images)["pixel_values"].shape[0]
    assert calls == [one]  # the patches of the 3 images once, not 5 times


def test_restore_gives_bit_identical_base(tiny_model, images):
    ckpts = engine_mod.expand_checkpoints(str(tiny_model / "checkpoints"))
    fast = engine_mod.load(str(tiny_model / "base"), ckpts)  # fresh: nothing merged or saved
    before = {k: v.clone() for k, v in fast.model.state_dict().items()}
    base_texts = fast.generate(images, None, **GEN)
    for name in (fast.adapters[0], fast.adapters[-1], fast.adapters[2]):
        fast.bank.merge(name)
        assert any(not torch.equal(before[k], v) for k, v in fast.model.state_dict().items())
    with fast.bank.stacked(fast.adapters):
        pass
    fast.bank.restore()
    after = fast.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and set(before) == set(after)
    assert fast.generate(images, None, **GEN) == base_texts
    assert len(fast.bank.saved) == 8  # only the touched projections (4 per layer, 2 layers)


def test_logits_vote_of_identical_checkpoints_equals_greedy(tiny_model, tmp_path, images):
    one = tiny_model / "checkpoints" / "checkpoint-100"
    copies = [shutil.copytree(one, tmp_path / f"copy-{i}") for i in range(3)]
    for lora in ("fast", "peft"):
        eng = engine_mod.load(str(tiny_model / "base"), [str(c) for c in copies], lora=lora)
        greedy = eng.generate(images, [eng.adapters[0]] * len(images), **GEN)
        voted = eng.generate_ensemble(images, eng.adapters, logits=True, **GEN)
        assert [texts[0] for texts in voted] == greedy, lora
        assert all(len(set(texts)) == 1 for texts in voted)


def test_static_cache_padded_buckets_and_compile_equal_dynamic(tiny_model, images):
    base = str(tiny_model / "base")
    eng = engine_mod.load(base, engine_mod.expand_checkpoints(str(tiny_model / "checkpoints")))
    last = eng.adapters[-1]
    dynamic = eng.generate(images, [last] * 3, **GEN)
    dyn_ens = eng.generate_ensemble(images, eng.adapters[:2], **GEN)
    eng.use_static(compiled=False, batch_size=4)  # 3 images padded to a bucket of 4
    assert eng.inputs(images)["input_ids"].shape[0] == 4
    assert eng.inputs(images)["input_ids"].shape[1] % shapes.PAD_TO == 0
    assert eng.generate(images, [last] * 3, **GEN) == dynamic
    assert eng.generate_ensemble(images, eng.adapters[:2], **GEN) == dyn_ens
    # compiled: traced by torch.compile (the `eager` backend spares CI Inductor's minutes)
    torch._dynamo.utils.counters.clear()
    eng.use_static(compiled=True, batch_size=4, backend="eager")
    assert eng.generate(images, [last] * 3, **GEN) == dynamic
    assert eng.generate_ensemble(images, eng.adapters[:2], **GEN) == dyn_ens
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0


def test_unsupported_checkpoint_falls_back_to_peft(tiny_model, tmp_path):
    ckpt = shutil.copytree(tiny_model / "checkpoints" / "checkpoint-50", tmp_path / "dora")
    cfg = json.loads((ckpt / "adapter_config.json").read_text())
    cfg["use_dora"] = True
    (ckpt / "adapter_config.json").write_text(json.dumps(cfg))
    eng = engine_mod.load(str(tiny_model / "base"))
    with pytest.raises(Unsupported, match="use_dora"):
        read_adapter(ckpt, eng.model)
    vision = shutil.copytree(tiny_model / "checkpoints" / "checkpoint-50", tmp_path / "vision")
    cfg = json.loads((vision / "adapter_config.json").read_text())
    cfg["target_modules"] += r"|.*visual\.blocks\.0\.attn\.qkv"  # peft must cover them too
    (vision / "adapter_config.json").write_text(json.dumps(cfg))
    tensors = {
        "base_model.model.model.visual.blocks.0.attn.qkv.lora_A.weight": torch.zeros(4, 32),
        "base_model.model.model.visual.blocks.0.attn.qkv.lora_B.weight": torch.zeros(96, 4),
    }
    save_file(tensors, str(vision / "adapter_model.safetensors"))
    with pytest.warns(UserWarning, match="vision tower; decoding with peft instead"):
        fallback = engine_mod.load(str(tiny_model / "base"), [str(vision)])
    assert fallback.mode == "peft" and fallback.bank is None


def test_buckets_and_the_compile_decision(tmp_path):
    assert shapes.buckets(8) == [1, 2, 4, 8] and shapes.buckets(24) == [1, 2, 4, 8, 16, 24]
    assert [shapes.bucket(n, 24) for n in (1, 3, 9, 17, 24)] == [1, 4, 16, 24, 24]
    assert not shapes.want_compile("auto", "cpu", 10**6)
    assert not shapes.want_compile("auto", "cuda", 50)  # a quickwin stays eager
    assert shapes.want_compile("auto", "cuda", shapes.min_rows("greedy"))
    assert not shapes.want_compile("auto", "cuda", shapes.min_rows("greedy") - 1)
    # per method: 300 images pay back for the combined method's 25 rows each, not for greedy
    assert shapes.want_compile("auto", "cuda", 300 * 25, "combined")
    assert not shapes.want_compile("auto", "cuda", 300, "greedy")
    # a warm cache's measured cost lowers the bar
    costs = shapes.CompileCosts(tmp_path, "2x64-float32-cuda")
    assert costs.get("greedy") is None
    costs.put("greedy", 4.0)
    assert shapes.CompileCosts(tmp_path, "2x64-float32-cuda").get("greedy") == 4.0
    assert shapes.CompileCosts(tmp_path, "36x2048-bfloat16-cuda").get("greedy") is None
    assert shapes.want_compile("auto", "cuda", 300, "greedy", costs.get("greedy"))
    assert shapes.want_compile("on", "cpu", 1) and not shapes.want_compile("off", "cuda", 10**6)


def test_compile_is_decided_per_method(engines, tmp_path, monkeypatch):
    from gpu_worker import runner

    _, fast = engines
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    methods = {"g": {"kind": "greedy"}, "c": {"kind": "combined", "num_beams": 5}}
    doc = {"model": {"base": "b"}, "data": {"source": "d"}, "methods": methods}
    auto = parse_playbook({**doc, "generation": {"compile": "auto"}})
    logs = []
    for method in auto.methods:  # CPU: auto stays eager whatever the rows
        assert runner._compile_for(auto, fast, method, 10**6, str(tmp_path), logs.append) is None
        assert not fast.static and not fast.compiled
    forced = parse_playbook({**doc, "generation": {"compile": "on"}})
    greedy = forced.methods[0]
    costs = runner._compile_for(forced, fast, greedy, 8, str(tmp_path), logs.append)
    try:
        assert fast.static and fast.compiled and costs is not None
        runner._record_compile(costs, greedy, {"batches": 3, "warmup_s": 5.0, "steady_s": 2.0})
        assert costs.get("greedy") == 4.0  # first batch 5 s less a steady one (2 s / 2)
        assert (tmp_path / "inductor" / "compile_costs.json").is_file()
    finally:
        fast.static = fast.compiled = False


def test_generation_settings_are_validated():
    doc = {"model": {"base": "b"}, "data": {"source": "d"}, "methods": {"g": {"kind": "greedy"}}}
    spec = parse_playbook({**doc, "generation": {"compile": True, "lora": "peft"}})
    assert (spec.compile, spec.lora) == ("on", "peft")  # YAML's bare `on` is a boolean
    assert parse_playbook(doc).compile == "auto"
    with pytest.raises(PlaybookError, match="generation.compile: expected one of auto, on, off"):
        parse_playbook({**doc, "generation": {"compile": "fast"}})
    with pytest.raises(PlaybookError, match="generation.lora"):
        parse_playbook({**doc, "generation": {"lora": "merged"}})
    quickwin = yaml.safe_load((BUNDLED / "quickwin.yaml").read_text())
    apply_override(quickwin, "generation.compile=off", "quickwin.yaml")  # what `orch --set` does
    assert parse_playbook(quickwin).compile == "off"
    bad = {**doc, "methods": {"c": {"kind": "combined", "vote": "logits"}}}
    with pytest.raises(PlaybookError, match="vote: unknown rule 'logits' for kind combined"):
        parse_playbook(bad)


def test_batches_by_width_prefetched_on_a_thread(tmp_path):
    import threading

    from gpu_worker.data import by_width, prefetched

    data = tmp_path / "data"
    shutil.copytree(SAMPLES, data)
    (data / "line-03.png").write_bytes(b"not a png")
    samples = Samples(DataSpec(source=str(data)))
    order = by_width(samples, list(range(10)))
    widths = [samples.width(i) for i in order]
    assert sorted(order) == list(range(10)) and widths == sorted(widths) and widths[0] == 0
    threads = []
    batches = [order[:4], order[4:8], order[8:]]
    got = list(
        prefetched(samples, batches, lambda imgs: threads.append(threading.current_thread()))
    )
    assert [sorted(b.indices + [i for i, _ in b.failures]) for b in got] == [
        sorted(b) for b in batches
    ]
    assert [i for b in got for i, _ in b.failures] == [3]
    assert len(threads) == 3 and threading.current_thread() not in threads
