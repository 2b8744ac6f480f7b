"""The batched vision tower (fastpath/vision.py) against transformers' stock Qwen2.5-VL tower:
the same positions, window order and windows as the stock helpers for any grid, the same
per-image features (1e-5, float32) from one attention call per layer, installed by the engine."""

import pytest
import torch
from torch.overrides import TorchFunctionMode
from transformers import vision_utils

from gpu_worker import engine as engine_mod
from gpu_worker.data import DataSpec, Samples
from gpu_worker.fastpath import vision
from tests.conftest import SAMPLES


class CountAttention(TorchFunctionMode):
    """Counts scaled_dot_product_attention calls."""

    calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.scaled_dot_product_attention:
            self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("window_size", [112, 56])
def test_plan_matches_the_stock_helpers(window_size):
    # 3B's geometry (patch 14, merge 2); frames, sizes that divide the window and that do not
    grid = torch.tensor([[1, 4, 22], [2, 8, 8], [1, 16, 10], [1, 2, 2], [3, 6, 30]])
    units = window_size // 2 // 14
    p = vision.plan(grid, 2, units, "cpu")
    index, cu_windows = vision_utils.get_vision_window_index(grid, 2, window_size, 14)
    assert torch.equal(p.window_index, index)
    assert torch.equal(p.reverse, torch.argsort(index))
    assert torch.equal(p.position_ids, vision_utils.get_vision_position_ids(grid, 2))
    cu_frames = vision_utils.get_vision_cu_seqlens(grid)
    for chunks, cu in ((p.windows, cu_windows), (p.frames, cu_frames)):
        lengths = (cu[1:] - cu[:-1]).long()
        assert chunks.n == len(lengths) and chunks.size == int(lengths.max())
        seq = torch.arange(int(lengths.sum()))  # gather then scatter is the identity
        assert torch.equal(seq.index_select(0, chunks.gather).index_select(0, chunks.scatter), seq)
    assert p.frames.mask is not None and p.windows.mask is not None  # ragged: masked pads


def test_batched_tower_gives_the_stock_features_per_image(tiny_model):
    eng = engine_mod.load(str(tiny_model / "base"))
    assert vision._tower(eng.model).forward.__func__ is vision.batched_forward  # engine installs
    samples = Samples(DataSpec(source=str(SAMPLES)))
    images = [samples.image(i) for i in range(12)]
    batch = eng.inputs(images)
    grids = batch["image_grid_thw"]
    assert len({tuple(g.tolist()) for g in grids}) > 3  # images of different sizes
    model = eng.model.model
    with torch.inference_mode(), CountAttention() as counter:
        got = model.get_image_features(batch["pixel_values"], grids).pooler_output
    assert counter.calls == len(model.visual.blocks)  # one call per layer for all 12 images
    vision.uninstall(eng.model)
    try:
        with torch.inference_mode():
            start, want = 0, []
            for g in grids:  # the stock tower, one image at a time
                n = int(g.prod())
                one = model.get_image_features(batch["pixel_values"][start : start + n], g[None])
                want.append(one.pooler_output[0])
                start += n
    finally:
        assert vision.install(eng.model)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
