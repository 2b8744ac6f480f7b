"""A beam's N best hypotheses with their scores (`kind: beam` with `nbest: N`).

`generate_nbest(engine, images, adapter, n, **gen)` runs one beam search over the batch with
transformers' `num_return_sequences=n` and `return_dict_in_generate`/`output_scores`, and returns
per image `[(text, score), ...]`, best first. The score is transformers' `sequences_scores`: the
hypothesis' summed token log-probabilities divided by its length ** `length_penalty` (1.0 by
default), the figure beam search ranks by; the first hypothesis is the text `Engine.generate`
returns for the same settings. It uses the engine's own inputs and adapter handling (merged LoRA
on the fast path, `adapter_names` under peft) beside `Engine.generate`, which it leaves as is.
"""

from __future__ import annotations

import torch

from .engine import BASE


@torch.inference_mode()
def generate_nbest(engine, images: list, adapter: str | None, n: int, **gen):
    """Per image, the `n` best beam hypotheses as (text, score), best first."""
    if gen.get("num_beams", 1) < n:
        raise ValueError(f"nbest {n} needs num_beams >= {n}")
    batch = engine.inputs(images)
    kwargs = dict(batch)
    if engine.mode == "peft":
        kwargs["adapter_names"] = [adapter if adapter is not None else BASE] * len(
            batch["input_ids"]
        )
    elif engine.bank is not None:
        engine.bank.merge(adapter)
    out = engine.model.generate(  # transformers' own beam search: our loop keeps one hypothesis
        **kwargs,
        **gen,
        num_return_sequences=n,
        output_scores=True,
        return_dict_in_generate=True,
    )
    new_tokens = out.sequences[:, batch["input_ids"].shape[1] :]
    texts = engine.processor.batch_decode(new_tokens, skip_special_tokens=True)
    scores = out.sequences_scores.float().tolist()
    return [
        [(texts[i * n + j], round(scores[i * n + j], 6)) for j in range(n)]
        for i in range(len(images))
    ]
