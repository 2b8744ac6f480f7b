"""orch: the laptop side. Never imports torch, transformers or peft."""
