"""Static KV caches kept for the life of an engine, and reordered in place for beam search.

Contract:
- `CachePool.get(model, rows, length)` returns transformers' `StaticCache` for that (rows, cache
  length, dtype, device), made once and reset (zeroed in place) on every later call, so its
  tensors keep their addresses across calls: a CUDA graph captured on them stays valid. At most
  `MAX_CACHES` are kept (least recently used dropped first), which bounds the memory they hold.
- `reorder_(cache, rows, filled)` copies the selected rows of every layer's keys and values over
  themselves (`index_select` of the filled prefix, then `copy_`), so beam search never replaces a
  cache tensor. `addresses(cache)` lists the data pointers, for the tests that assert it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from transformers import StaticCache

MAX_CACHES = 4


class CachePool:
    """One static cache per (rows, length, dtype, device), reused across calls."""

    def __init__(self, limit: int = MAX_CACHES) -> None:
        self.limit = limit
        self.caches: OrderedDict[tuple, StaticCache] = OrderedDict()

    def get(self, model, rows: int, length: int) -> StaticCache:
        """The cache for `rows` sequences of up to `length` tokens, empty (reset in place)."""
        key = (rows, length, model.dtype, str(model.device))
        cache = self.caches.pop(key, None)
        if cache is None:
            text = model.config.get_text_config(decoder=True)
            cache = StaticCache(config=text, max_cache_len=length)
            heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
            head_dim = (
                getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
            )
            cache.early_initialization(
                batch_size=rows, num_heads=heads, head_dim=head_dim,
                dtype=model.dtype, device=model.device,
            )  # fmt: skip
        else:
            cache.reset()
        self.caches[key] = cache
        while len(self.caches) > self.limit:
            self.caches.popitem(last=False)
        return cache


def reorder_(cache: StaticCache, rows: torch.Tensor, filled: int) -> None:
    """Row i of each layer becomes old row `rows[i]` over the first `filled` positions, in place."""
    for layer in cache.layers:
        for t in (layer.keys, layer.values):
            head = t[:, :, :filled]
            head.copy_(head.index_select(0, rows))


def addresses(cache: StaticCache) -> list[int]:
    """The data pointers of every cache tensor (keys and values of each layer)."""
    return [t.data_ptr() for layer in cache.layers for t in (layer.keys, layer.values)]
