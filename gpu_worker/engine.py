"""Load a vision-language model once with every LoRA checkpoint, generate.

The only module of the worker (with `fastpath/`) that imports torch, transformers or peft (peft
lazily: it costs seconds). Contract:
- `load(base, checkpoints, lora="fast")` loads the base model and its processor from a hub name
  or a local folder and reads each checkpoint folder (named after the folder) into a
  `fastpath.lora.LoraBank`; `lora="peft"` (or a checkpoint the fast path cannot express)
  attaches them as peft adapters instead: the reference path. Never per call.
- `Engine.generate(images, adapters, **gen)` runs one batched `generate`, `adapters` giving one
  name per row (None: the base). Fast path: one adapter for all rows decodes on merged weights;
  mixed rows run stacked. peft path: `adapter_names=`.
- `Engine.generate_ensemble(images, names, logits=False, **gen)` decodes every checkpoint on
  every image in one batch (rows adapter-major; vision tower once per image on the fast path)
  and returns k strings per image; `logits=True` is `vote: logits`.
- Fast path: the vision tower runs all images of a call in one attention call per layer
  (`fastpath.vision`); the peft path keeps the stock tower (the reference).
- `Engine.use_static(...)`: padded batch buckets, prompts padded to `shapes.PAD_TO`, and our own
  decode loop (`fastpath.decode`: static caches kept across calls, a compiled step, beams
  reordered in place) behind `generate(custom_generate=...)`; settings it does not take decode
  with transformers' loops. `prefetch(images)` runs the processor ahead (a loader thread).
- A call whose rows x cache would not fit the free memory is split (`fastpath.memory`).
- bf16 on CUDA, float32 on CPU; left padding; the processor's outputs go to `generate` unchanged,
  except that a row without `<|vision_start|>` (a `raw` prompt) gets text M-RoPE positions for its
  image tokens, as transformers 4.x gave them (which found images by `<|vision_start|>`).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field

import torch
from transformers import AutoProcessor, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin

from .checkpoints import adapter_names, expand_checkpoints
from .fastpath import decode, memory, shapes
from .prompts import DEFAULT_PROMPT, check_template, prompt_text

__all__ = ["Engine", "expand_checkpoints", "load", "pick_device"]

PREFETCH_KEEP = 4
COMPILED_GRAPHS = 64
_READY_LOCK = threading.Lock()
BASE = "__base__"
VISION_START = "<|vision_start|>"


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
    """A loaded model with its processor and named adapters.

    `bank` set: the fast path (merged weights for one checkpoint, stacked LoRA for several);
    `bank` None: peft's `adapter_names` (the reference path). `static` decodes with our loop
    (`decoder`, static caches), batches padded to a bucket and prompts to a multiple of
    `shapes.PAD_TO`; `compiled` compiles its step (CUDA graphs on CUDA).
    """

    model: object
    processor: object
    device: str
    adapters: list[str] = field(default_factory=list)
    prompt: str = DEFAULT_PROMPT
    bank: object = None
    static: bool = False
    compiled: bool = False
    batch_size: int = 8
    compile_backend: str | None = None
    decoder: object = None  # `fastpath.decode.Decoder` once `use_static` ran
    prompt_format: str = "chat"
    peft_reason: str | None = None  # why the peft path decodes (None: the fast path)
    notes: list[str] = field(default_factory=list)  # what loading changed (e.g. a resize)
    memory_budget: int | None = None  # bytes a call may use (None: free CUDA memory; CPU: any)
    _ready: dict = field(default_factory=dict, repr=False)

    @property
    def mode(self) -> str:
        """`fast` or `peft`."""
        return "fast" if self.bank is not None or not self.adapters else "peft"

    def synchronize(self) -> None:
        """Wait for queued GPU work, so timings measure it."""
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def use_static(self, compiled: bool, batch_size: int, backend: str | None = None) -> None:
        """Decode with a static cache and fixed shapes from now on (compiled or not).

        `backend` overrides torch.compile's (Inductor, CUDA graphs on CUDA); tests pass `eager`
        to check that the graphs trace on CPU without paying Inductor's compile time.
        """
        self.static, self.compiled, self.batch_size = True, compiled, batch_size
        self.compile_backend = backend
        self.decoder = decode.Decoder(compiled, backend, self.device)
        if compiled:  # methods x buckets x prompt lengths x (merged | stacked k): many graphs;
            config = torch._dynamo.config  # past the default 8 dynamo would fall back to eager
            config.cache_size_limit = max(config.cache_size_limit, COMPILED_GRAPHS)
            config.accumulated_cache_size_limit = max(
                config.accumulated_cache_size_limit, 4 * COMPILED_GRAPHS
            )

    def _padded(self, images: list) -> list:
        if not self.static or not images:
            return list(images)
        return list(images) + [images[-1]] * (
            shapes.bucket(len(images), self.batch_size) - len(images)
        )

    def preprocess(self, images: list, prompt: str | None = None):
        """The processor's batch for `images` on the CPU (padded to a bucket when static)."""
        text = prompt_text(self.processor, prompt or self.prompt, self.prompt_format)
        rows = self._padded(images)
        extra = {"pad_to_multiple_of": shapes.PAD_TO} if self.static else {}
        batch = self.processor(
            text=[text] * len(rows), images=rows, return_tensors="pt", padding=True, **extra
        )
        if VISION_START not in text and "mm_token_type_ids" in batch:
            # transformers 4.x found images by <|vision_start|>: without it the image tokens got
            # text (1-D) M-RoPE positions; transformers 5 would give them 3-D ones. Decode as 4.x.
            batch["mm_token_type_ids"] = torch.zeros_like(batch["mm_token_type_ids"])
        return batch

    def prefetch(self, images: list, prompt: str | None = None) -> None:
        """Run the processor for `images` now (e.g. on a loader thread); `inputs` reuses it.

        Entries hold the images themselves, so the ids in a key cannot be reused while cached;
        at most `PREFETCH_KEEP` are kept.
        """
        key = (tuple(id(i) for i in images), prompt or self.prompt)
        batch = self.preprocess(images, prompt)
        with _READY_LOCK:
            self._ready[key] = (list(images), batch)
            while len(self._ready) > PREFETCH_KEEP:
                self._ready.pop(next(iter(self._ready)))

    def inputs(self, images: list, prompt: str | None = None):
        """The processor's batch for `images` (left-padded), on the model's device."""
        key = (tuple(id(i) for i in images), prompt or self.prompt)
        with _READY_LOCK:
            entry = self._ready.pop(key, None)
        batch = entry[1] if entry is not None else self.preprocess(images, prompt)
        return batch.to(self.device)

    def _decode(self, batch, kwargs: dict, gen: dict, real: list[int] | None = None) -> list[str]:
        """Texts of all rows; static: our loop (`fastpath.decode`), `real` the non-padding rows."""
        if self.static and decode.supports(gen):
            gen = dict(gen, custom_generate=self.decoder.run, real_rows=real)
        out = self.model.generate(**kwargs, **gen)
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)

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

        `seed` seeds torch's generators first, for reproducible sampling. On the fast path one
        adapter for all rows runs on merged weights; mixed rows are regrouped adapter-major.
        Rows that would not fit the free memory are decoded in smaller calls (`fastpath.memory`).
        """
        if seed is not None:
            torch.manual_seed(seed)
        names = list(adapters or [None] * len(images))
        if not self.adapters and any(a is not None for a in names):
            raise ValueError("this model has no LoRA checkpoints loaded")
        limit = memory.plan_call(self, images, gen.get("num_beams") or 1, gen, prompt)
        return memory.split_calls(
            lambda a, b: self._generate(images[a:b], names[a:b], prompt, gen), len(images), limit
        )

    def _generate(self, images: list, names: list, prompt: str | None, gen: dict) -> list[str]:
        """`generate` for rows that fit in one call."""
        if self.mode == "peft":
            batch = self.inputs(images, prompt)
            names += names[-1:] * (batch["input_ids"].shape[0] - len(names))  # bucket padding
            kwargs = dict(batch, adapter_names=[a if a is not None else BASE for a in names])
            return self._decode(batch, kwargs, gen, list(range(len(images))))[: len(images)]
        groups = list(dict.fromkeys(names))
        if len(groups) == 1:
            if self.bank is not None:
                self.bank.merge(groups[0])
            batch = self.inputs(images, prompt)
            return self._decode(batch, dict(batch), gen, list(range(len(images))))[: len(images)]
        return self._generate_mixed(images, names, groups, prompt, gen)

    def _generate_mixed(self, images, names, groups, prompt, gen) -> list[str]:
        """Rows with different adapters: stacked LoRA over adapter-major rows."""
        order = sorted(range(len(images)), key=lambda i: groups.index(names[i]))
        sizes = {names.count(g) for g in groups}
        out: list[str | None] = [None] * len(images)
        if len(sizes) != 1 or self.static:  # one merged decode per adapter
            for g in groups:
                rows = [i for i in order if names[i] == g]
                for i, text in zip(
                    rows,
                    self.generate([images[i] for i in rows], [g] * len(rows), prompt, **gen),
                    strict=True,
                ):
                    out[i] = text
            return out
        n = sizes.pop()
        batch = self.inputs([images[i] for i in order], prompt)
        with self.bank.stacked([names[order[a * n]] for a in range(len(groups))]):
            texts = self._decode(batch, dict(batch), gen)
        for pos, i in enumerate(order):
            out[i] = texts[pos]
        return out

    @torch.inference_mode()
    def generate_ensemble(
        self, images: list, names: list[str], logits: bool = False, prompt: str | None = None, **gen
    ) -> list[list[str]]:
        """Every checkpoint in `names` on every image in one batch: per image, k strings.

        Rows are adapter-major. `logits=True` averages the k rows' log-probs at each step
        (`vote: logits`): all k strings of an image are then the same. On the fast path the
        vision tower runs once per image and its embeddings are repeated k times. Images whose
        k x beams rows would not fit the free memory are decoded in smaller calls.
        """
        gen = dict(gen)
        if logits:
            from transformers import LogitsProcessorList

            from .fastpath.vote import MeanLogProbs

            gen["logits_processor"] = LogitsProcessorList([MeanLogProbs(len(names))])
        rows = len(names) * (gen.get("num_beams") or 1)
        limit = memory.plan_call(self, images, rows, gen, prompt)
        return memory.split_calls(
            lambda a, b: self._ensemble(images[a:b], names, prompt, gen), len(images), limit
        )

    def _ensemble(self, images: list, names: list[str], prompt, gen: dict) -> list[list[str]]:
        """`generate_ensemble` for images whose rows fit in one call."""
        k, n = len(names), len(images)
        if self.mode == "peft":
            rows = [img for _ in names for img in images]
            texts = self.generate(rows, [a for a in names for _ in images], prompt, **gen)
        else:
            batch = self.inputs(images, prompt)
            rows = batch["input_ids"].shape[0]
            kwargs = _repeat_vision(self.model, batch, k)
            with self.bank.stacked(list(names)):
                texts = self._decode(
                    batch, kwargs, gen, [a * rows + i for a in range(k) for i in range(n)]
                )
            texts = [t for a in range(k) for t in texts[a * rows : a * rows + n]]
        return [[texts[a * n + i] for a in range(k)] for i in range(n)]


def _repeat_vision(model, batch, k: int) -> dict:
    """Generate kwargs for k adapter-major copies of `batch`, the vision tower run once."""
    feats = model.model.get_image_features(
        batch["pixel_values"], batch["image_grid_thw"], return_dict=True
    )
    feats.pooler_output = tuple(feats.pooler_output) * k
    kwargs = {}
    for key, value in batch.items():
        if key == "pixel_values":
            continue
        kwargs[key] = value.repeat(k, *([1] * (value.dim() - 1)))
    kwargs["mm_encoder_outputs"] = {"image": feats}
    return kwargs


def load(
    base: str,
    checkpoints: list[str] = (),
    device: str = "auto",
    prompt: str = DEFAULT_PROMPT,
    dtype: str = "auto",
    lora: str = "fast",
    prompt_format: str = "chat",
) -> Engine:
    """Load `base` once with every checkpoint, named after its folder.

    Every checkpoint is read and renamed for the loaded model first (`fastpath.adapters`: any
    transformers 4.4x–5.x layout, safetensors or `.bin`; a tensor that lands nowhere, or trained
    embeddings, is a `LoadError`); adapters carrying the base's embedding rows resize the model
    to their vocabulary, as their training stack did. `lora="fast"` puts them in a
    `fastpath.lora.LoraBank` (falling back to peft, with a warning, for a feature it does not
    support); `lora="peft"` attaches them as peft adapters (`adapters.attach_peft`: state dicts
    set and every tensor checked).
    """
    from transformers import AutoModelForImageTextToText

    from .fastpath.adapters import attach_peft, embedding_plan, key_renamer, read_checkpoint

    check_template(prompt, prompt_format)
    device = pick_device(device)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    processor = load_processor(base)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch_dtype)
    model.to(device).eval()
    names = adapter_names(checkpoints)
    rename = key_renamer(model)
    files = [read_checkpoint(c, model, rename) for c in checkpoints]
    notes = []
    vocab = embedding_plan(files, model)
    if vocab is not None and vocab != model.get_input_embeddings().weight.shape[0]:
        notes.append(f"vocabulary resized to {vocab} rows, as the adapters' training stack did")
        model.resize_token_embeddings(vocab, mean_resizing=False)
    bank, why = None, "generation.lora: peft"
    if checkpoints and lora == "fast":
        from .fastpath.lora import Unsupported, load_bank

        try:
            bank = load_bank(model, list(checkpoints), names, files)
        except Unsupported as exc:
            why = str(exc)
            warnings.warn(f"{exc}; decoding with peft instead", stacklevel=2)
    if bank is not None or not checkpoints:  # the fast path: one attention call per layer
        from .fastpath.vision import install

        install(model)
    if checkpoints and bank is None:
        model = attach_peft(model, list(checkpoints), names, files)
        model.to(device).eval()
    return Engine(
        model=model, processor=processor, device=device, adapters=names, prompt=prompt, bank=bank,
        prompt_format=prompt_format, peft_reason=None if bank else why, notes=notes,
    )  # fmt: skip


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
