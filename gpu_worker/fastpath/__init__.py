"""The worker's fast path: peft-free LoRA (merged or stacked), token-level voting, fixed shapes.

`lora.py` reads checkpoints and merges/stacks them, `vote.py` holds the `vote: logits`
processor, `shapes.py` the batch buckets and the compile decision, `decode.py` the static path's
decode loop (with `beam.py` and `kvcache.py`). `engine.py` drives them.
"""
