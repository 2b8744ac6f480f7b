"""Qwen2.5-VL's vision tower with one attention call per layer for all images of a batch.

The stock tower (transformers 5, SDPA or eager attention) splits every layer's packed sequence
into its windows (or images) with a `.tolist()` and calls attention once per window: a Python
loop of thousands of small calls per batch. `install(model)` replaces the tower's `forward` on
the loaded model (that instance only) with `batched_forward`:
- `plan(grid_thw, ...)` computes, once per batch and with tensor operations only (no per-image
  Python loop), what the stock forward computes per image: the rotary position ids, the window
  order of the merged units and the window lengths, and the per-frame image lengths;
- `Chunks` lays a set of chunks (windows, or whole images) out as one padded batch
  `[chunks, heads, longest, head_dim]` with a key mask (none when every chunk is full): each
  layer gathers q/k/v into it, runs ONE `scaled_dot_product_attention` and scatters back;
- everything else (patch embedding, rotary, norms, MLPs, merger) is the stock modules' own code.
Padding keys are masked out, so each window's softmax is over its own keys only: features equal
the stock tower's to float32 rounding (tests: 1e-5). With flash-attention requested the stock
tower already makes one variable-length call per layer, and `install` leaves it alone.
`uninstall(model)` restores the stock forward.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen

__all__ = ["Chunks", "Plan", "batched_forward", "install", "plan", "uninstall"]

MARK = "_orch_batched_vision"


@dataclass
class Chunks:
    """Consecutive chunks of a packed sequence as one padded batch of `n` rows of `size`."""

    n: int
    size: int
    gather: torch.Tensor  # [n * size]: the packed position each padded slot reads (pads: 0)
    scatter: torch.Tensor  # [total]: the padded slot of each packed position
    mask: torch.Tensor | None  # [n, 1, 1, size] bool, True where a key is real; None: all are

    @classmethod
    def of(cls, lengths: torch.Tensor, device) -> Chunks:
        """The layout of chunks of `lengths` (a CPU integer tensor, no zero entries)."""
        lengths = lengths.long()
        n, size = len(lengths), int(lengths.max())
        starts = lengths.cumsum(0) - lengths
        slot = torch.arange(size)
        real = slot[None, :] < lengths[:, None]
        gather = torch.where(real, starts[:, None] + slot[None, :], 0).reshape(-1)
        owner = torch.repeat_interleave(torch.arange(n), lengths)
        scatter = torch.arange(int(lengths.sum())) - starts[owner] + owner * size
        mask = None if bool(real.all()) else real[:, None, None, :].to(device)
        return cls(n, size, gather.to(device), scatter.to(device), mask)

    def attend(self, q, k, v, scale: float) -> torch.Tensor:
        """Attention within each chunk: q, k, v `[total, heads, dim]` -> `[total, heads * dim]`."""
        heads, dim = q.shape[1], q.shape[2]

        def padded(x: torch.Tensor) -> torch.Tensor:
            rows = x.index_select(0, self.gather)
            return rows.view(self.n, self.size, heads, dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            padded(q), padded(k), padded(v), attn_mask=self.mask, scale=scale
        )
        out = out.transpose(1, 2).reshape(self.n * self.size, heads * dim)
        return out.index_select(0, self.scatter)


@dataclass
class Plan:
    """What one batch's layers share: positions, window order, the two chunk layouts."""

    position_ids: torch.Tensor  # [patches, 2] (h, w) per patch, stock order
    window_index: torch.Tensor  # [merged units]: the window-major order of the merged units
    reverse: torch.Tensor  # its inverse permutation
    windows: Chunks  # the windowed layers' chunks
    frames: Chunks  # the full-attention layers' chunks (one per image frame)


def plan(grid_thw: torch.Tensor, merge: int, window_units: int, device) -> Plan:
    """The batch's positions, window order and chunk layouts, without a per-image loop.

    `grid_thw` `[images, 3]` in patches; `merge` the spatial merge size; `window_units` the
    window's side in merged units (`window_size // merge // patch_size`). A merged unit at
    (frame t, row y, column x) of image i sorts by (i, t, y // w, x // w, y % w, x % w): the
    stock order (windows row-major, units row-major within a window, empty windows dropped).
    """
    grid = grid_thw.detach().to("cpu", torch.long)
    t, h, w = grid[:, 0], grid[:, 1] // merge, grid[:, 2] // merge  # h, w in merged units
    units = t * h * w
    image = torch.repeat_interleave(torch.arange(len(grid)), units)
    local = torch.arange(int(units.sum())) - (units.cumsum(0) - units)[image]
    hi, wi = h[image], w[image]
    frame, rest = local // (hi * wi), local % (hi * wi)
    y, x = rest // wi, rest % wi
    wh, ww = -(-h // window_units), -(-w // window_units)  # windows per column / row
    space = t * wh * ww  # window ids of each image
    window = ((space.cumsum(0) - space)[image] + (frame * wh[image] + y // window_units)
              * ww[image] + x // window_units)  # fmt: skip
    key = (window * window_units + y % window_units) * window_units + x % window_units
    window_index = torch.argsort(key)
    _, counts = torch.unique_consecutive(window[window_index], return_counts=True)
    # Patches within a merged unit come in (dy, dx) order: positions per patch, stock layout.
    dy = torch.arange(merge).repeat_interleave(merge)
    dx = torch.arange(merge).repeat(merge)
    hpos = (y[:, None] * merge + dy[None, :]).reshape(-1)
    wpos = (x[:, None] * merge + dx[None, :]).reshape(-1)
    frames = torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0])
    return Plan(
        position_ids=torch.stack([hpos, wpos], dim=-1).to(device),
        window_index=window_index.to(device),
        reverse=torch.argsort(window_index).to(device),
        windows=Chunks.of(counts * merge * merge, device),
        frames=Chunks.of(frames, device),
    )


def _attention(attn, x: torch.Tensor, chunks: Chunks, rotary) -> torch.Tensor:
    """The stock `Qwen2_5_VLVisionAttention` over every chunk at once."""
    seq = x.shape[0]
    q, k, v = attn.qkv(x).reshape(seq, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = qwen.apply_rotary_pos_emb_vision(q, k, *rotary)
    return attn.proj(chunks.attend(q, k, v, attn.scaling))


def batched_forward(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs):
    """The tower's forward for a whole batch: one attention call per layer (see module doc)."""
    window_units = self.window_size // self.spatial_merge_size // self.patch_size
    p = plan(grid_thw, self.spatial_merge_size, window_units, hidden_states.device)
    hidden = self.patch_embed(hidden_states)
    seq = hidden.shape[0]
    hidden = self.permute_input_for_window_attn(hidden, p.window_index, seq_len=seq)
    rotary = self.rotary_pos_emb(hidden, p.position_ids)
    rotary = tuple(self.permute_input_for_window_attn(r, p.window_index, seq) for r in rotary)
    for number, block in enumerate(self.blocks):
        chunks = p.frames if number in self.fullatt_block_indexes else p.windows
        hidden = hidden + _attention(block.attn, block.norm1(hidden), chunks, rotary)
        hidden = hidden + block.mlp(block.norm2(hidden))
    merged = self.merger(hidden)[p.reverse, :]
    return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=merged)


def _tower(model):
    """The Qwen2.5-VL vision tower of `model` (None for another architecture)."""
    inner = getattr(model, "model", model)
    tower = getattr(inner, "visual", None)
    return tower if isinstance(tower, qwen.Qwen2_5_VisionTransformerPretrainedModel) else None


def install(model) -> bool:
    """Patch the loaded model's vision tower to `batched_forward`; False when left stock."""
    tower = _tower(model)
    if tower is None or qwen.is_flash_attention_requested(tower.config):
        return False
    tower.forward = types.MethodType(batched_forward, tower)
    setattr(tower, MARK, True)
    return True


def uninstall(model) -> None:
    """Give the vision tower its stock forward back."""
    tower = _tower(model)
    if tower is not None and getattr(tower, MARK, False):
        del tower.forward
        delattr(tower, MARK)
