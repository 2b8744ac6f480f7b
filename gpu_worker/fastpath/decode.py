"""Our own decode loop around one step function (the gpt-fast pattern), for the static path.

`Decoder.run` is handed to transformers' `generate(custom_generate=...)`: transformers prepares
the inputs exactly as for its own loops (generation config, logits processors, stopping criteria,
M-RoPE position ids and `rope_deltas`, rows expanded for beams), then this loop decodes:

- the prefill is the model's own forward (vision tower, 3-D positions), as `generate` runs it;
- every later token comes from `step(tokens, positions, mask, cache)`: one forward of one token
  per row on a static cache, compiled once per engine (`torch.compile`; on CUDA with CUDA graphs,
  recorded per (rows, cache length)); greedy, sampling and beam search all call it;
- the static cache comes from `kvcache.CachePool` (one per rows x length, reused across calls);
  beam search reorders it in place (`kvcache.reorder_`), so no cache tensor changes address;
- end of sequence is read on the host every `EOS_CHECK_EVERY` steps, not every step; steps run
  after every row finished only append padding, which is cut off: the texts are the same;
- sampling draws only for real rows (`real_rows`): padding rows of a bucket get the pad token and
  consume no random numbers, so a sampled text does not depend on the bucket or on compile.

Supported: greedy, sampling (transformers' logits processors: temperature, top-p, ...), beam
search (`beam.py`), any extra `logits_processor` such as `vote.MeanLogProbs`. `supports(gen)`
says whether a call's settings fit; the engine sends the rest to transformers' own loops.
"""

from __future__ import annotations

import torch

from . import beam, kvcache

EOS_CHECK_EVERY = 8
SUPPORTED = {
    "max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "num_beams",
    "early_stopping", "length_penalty", "logits_processor", "eos_token_id",
}  # fmt: skip


def supports(gen: dict) -> bool:
    """Whether our loop decodes a `generate` call with these settings (else transformers does)."""
    return set(gen) <= SUPPORTED and not (gen.get("do_sample") and gen.get("num_beams", 1) > 1)


def _forward(model, tokens, positions, mask, cache):
    """One token per row: float32 logits `[rows, vocab]`; the cache grows by one in place."""
    out = model(
        input_ids=tokens, position_ids=positions, attention_mask=mask, cache=cache,
        use_cache=True, logits_to_keep=1,
    )  # fmt: skip
    return out.logits[:, -1].float()


class Decoder:
    """The decode loop of one engine: its compiled step and its static caches."""

    def __init__(self, compiled: bool = False, backend: str | None = None, device: str = "cpu"):
        self.pool = kvcache.CachePool()
        self.compiled = compiled
        self.cuda_graphs = compiled and backend is None and device.startswith("cuda")
        if compiled:
            self.step = torch.compile(
                _forward,
                backend=backend or "inductor",
                mode="reduce-overhead" if self.cuda_graphs else None,
                dynamic=False,
            )
        else:
            self.step = _forward
        self.last_cache = None  # the cache of the latest call (tests read its addresses)

    def run(
        self,
        model,
        input_ids: torch.Tensor,
        logits_processor=None,
        stopping_criteria=None,
        generation_config=None,
        real_rows: list[int] | None = None,
        **model_kwargs,
    ) -> torch.Tensor:
        """Decode like `generate` (called by it, `custom_generate`): prompt + new tokens per row.

        `real_rows` are the rows that are not bucket padding (None: all): only they sample, and
        only they keep the loop going. Beam search draws nothing and decodes every row.
        """
        rows, prompt = input_ids.shape
        max_length = generation_config.max_length
        cache = self.pool.get(model, rows, max_length - 1)
        self.last_cache = model_kwargs["cache"] = cache
        mask = model_kwargs.get("attention_mask")
        full = torch.ones(rows, max_length - 1, dtype=torch.long, device=input_ids.device)
        if mask is not None:
            full[:, :prompt] = mask
        inputs = model.prepare_inputs_for_generation(
            input_ids, next_sequence_length=prompt, is_first_iteration=True, **model_kwargs
        )
        logits = model(**inputs, return_dict=True).logits[:, -1].float()
        loop = _Loop(self, model, cache, full, model_kwargs["position_ids"][..., -1:].clone())
        if generation_config.num_beams > 1:
            return beam.search(
                loop, input_ids, logits, logits_processor, stopping_criteria, generation_config,
                EOS_CHECK_EVERY,
            )  # fmt: skip
        return _greedy_or_sample(
            loop, input_ids, logits, logits_processor, stopping_criteria, generation_config,
            real_rows,
        )  # fmt: skip


class _Loop:
    """The state the step reads: positions advance by one per token, the mask is fixed."""

    def __init__(self, decoder: Decoder, model, cache, mask, positions):
        self.decoder, self.model, self.cache = decoder, model, cache
        self.mask, self.positions = mask, positions

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits after feeding `tokens` `[rows]`, one per row (float32 `[rows, vocab]`)."""
        self.positions += 1
        if self.decoder.cuda_graphs:  # a new step: the previous replay's outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        logits = self.decoder.step(
            self.model, tokens[:, None], self.positions, self.mask, self.cache
        )
        return logits.clone() if self.decoder.compiled else logits  # graph outputs are reused


def _greedy_or_sample(
    loop, input_ids, logits, processors, stopping, config, real_rows
) -> torch.Tensor:
    """Greedy or sampled tokens until every real row stopped (checked every k steps)."""
    rows, prompt = input_ids.shape
    max_length = config.max_length
    eos = config.eos_token_id
    first_eos = eos[0] if isinstance(eos, list | tuple) else eos
    pad_id = config.pad_token_id if config.pad_token_id is not None else first_eos
    pad = torch.tensor(pad_id, device=input_ids.device)
    seqs = torch.full((rows, max_length), int(pad), dtype=input_ids.dtype, device=input_ids.device)
    seqs[:, :prompt] = input_ids
    unfinished = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
    real = torch.arange(rows) if real_rows is None else torch.tensor(real_rows, dtype=torch.long)
    real = real.to(input_ids.device)
    unfinished[real] = True
    lengths = torch.zeros(rows, dtype=torch.long, device=input_ids.device)
    cur = prompt
    while True:
        scores = processors(seqs[:, :cur], logits) if processors else logits
        if config.do_sample:  # only the real rows draw: padding rows consume no random numbers
            tokens = pad.expand(rows).clone()
            probs = torch.softmax(scores[real], dim=-1)
            tokens[real] = torch.multinomial(probs, num_samples=1).squeeze(1)
        else:
            tokens = scores.argmax(dim=-1)
        tokens = torch.where(unfinished, tokens, pad)
        seqs[:, cur] = tokens
        lengths += unfinished
        cur += 1
        unfinished &= ~stopping(seqs[:, :cur], None)
        if cur >= max_length or (cur - prompt) % EOS_CHECK_EVERY == 0 and not unfinished.any():
            break
        logits = loop(tokens)
    return seqs[:, : prompt + int(lengths.max())]
