"""Load a vision-language model once, attach every LoRA checkpoint as a named adapter, generate.

The only module of the worker that imports torch, transformers or peft (peft lazily: it costs
seconds). Contract:
- `load(base, checkpoints)` loads the base model and its processor from a hub name or a local
  folder, then attaches each checkpoint folder as a peft adapter named after the folder
  (`PeftModel.from_pretrained` for the first, `load_adapter` for the rest); never per call.
- `Engine.generate(images, adapters, **gen)` runs one batched `generate`; `adapters` gives one
  adapter name per row (peft's `adapter_names=`), so an ensemble is a single batched call.
  `None` runs the base model (adapters disabled).
- bf16 on CUDA, float32 on CPU; left padding; the processor's outputs go to `generate` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import AutoProcessor, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin

from .checkpoints import adapter_names, expand_checkpoints

__all__ = ["Engine", "expand_checkpoints", "load", "pick_device"]

DEFAULT_PROMPT = "Extract the text in this image."
BASE = "__base__"


class ImageOnlyQwenVLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without the video processor (which needs torchvision).

    Loads the same saved folders (images only); `load_processor` falls back to it.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def load_processor(base: str):
    """The processor of `base`; image-only when the stock one needs torchvision."""
    try:
        import torchvision  # noqa: F401

        processor = AutoProcessor.from_pretrained(base)
    except (ImportError, RuntimeError, ValueError, OSError):
        processor = ImageOnlyQwenVLProcessor.from_pretrained(base)
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise TypeError(f"{base}: expected an image-text processor, got {type(processor)}")
    processor.tokenizer.padding_side = "left"
    return processor


def pick_device(device: str = "auto") -> str:
    """`cuda` when available (or asked for), else `cpu`."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class Engine:
    """A loaded model with its processor and named adapters."""

    model: object
    processor: object
    device: str
    adapters: list[str] = field(default_factory=list)
    prompt: str = DEFAULT_PROMPT

    def synchronize(self) -> None:
        """Wait for queued GPU work, so timings measure it."""
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def inputs(self, images: list, prompt: str | None = None):
        """The processor's batch for `images` (left-padded), on the model's device."""
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
        ]
        text = self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        batch = self.processor(
            text=[text] * len(images), images=images, return_tensors="pt", padding=True
        )
        return batch.to(self.device)

    @torch.inference_mode()
    def generate(
        self,
        images: list,
        adapters: list[str | None] | None = None,
        prompt: str | None = None,
        seed: int | None = None,
        **gen,
    ) -> list[str]:
        """Decode one text per row. Rows are `images`, each with `adapters[i]` (None: base).

        `seed` seeds torch's generators first, for reproducible sampling.
        """
        if seed is not None:
            torch.manual_seed(seed)
        batch = self.inputs(images, prompt or self.prompt)
        kwargs = dict(batch)
        if self.adapters:
            names = [a if a is not None else BASE for a in (adapters or [None] * len(images))]
            kwargs["adapter_names"] = names
        elif adapters and any(a is not None for a in adapters):
            raise ValueError("this model has no LoRA checkpoints loaded")
        out = self.model.generate(**kwargs, **gen)
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)


def load(
    base: str,
    checkpoints: list[str] = (),
    device: str = "auto",
    prompt: str = DEFAULT_PROMPT,
    dtype: str = "auto",
) -> Engine:
    """Load `base` once and attach each checkpoint as an adapter named after its folder."""
    from transformers import AutoModelForImageTextToText

    device = pick_device(device)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    processor = load_processor(base)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch_dtype)
    names: list[str] = []
    if checkpoints:
        from peft import PeftModel

        names = adapter_names(checkpoints)
        model = PeftModel.from_pretrained(model, checkpoints[0], adapter_name=names[0])
        for path, name in zip(checkpoints[1:], names[1:], strict=True):
            model.load_adapter(path, adapter_name=name)
    model.to(device).eval()
    return Engine(model=model, processor=processor, device=device, adapters=names, prompt=prompt)


def versions() -> dict[str, str]:
    """Versions of the libraries that produced a result."""
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import peft

        out["peft"] = peft.__version__
    except ImportError:
        pass
    return out


def gpu_name() -> str | None:
    """The CUDA device's name, or None on CPU."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
