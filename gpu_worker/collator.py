"""Training and held-out batches built with the evaluation's own prompt (`prompts.prompt_text`).

`AnswerCollator(processor, prompt, prompt_format)` turns rows `{"image", "text"}` into one
training batch: per row the prompt ids (image placeholder expanded by the processor), then the
answer's tokens and the end-of-turn token; the processor's other per-token outputs
(`mm_token_type_ids`: where the image tokens are, for the rope index) extended with zeros.
`labels` are the answer and end tokens only: -100 on the prompt, the image and the padding
(right padding). Each row's image placeholder is checked: the prompt holds exactly the image
tokens the processor made for that image, and the answer holds none. `generation_batch` is the
left-padded batch greedy decoding reads, with the same prompt.
"""

from __future__ import annotations

import torch

from .prompts import prompt_text

IGNORE = -100


class PlaceholderError(ValueError):
    """A row's image placeholder does not match the image (or the answer holds one)."""


class AnswerCollator:
    """Rows -> `input_ids`, `attention_mask`, `labels`, `pixel_values`, `image_grid_thw`."""

    def __init__(self, processor, prompt: str | None, prompt_format: str = "chat") -> None:
        self.processor = processor
        self.text = prompt_text(processor, prompt, prompt_format)
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.end_id = tok.eos_token_id
        self.image_id = tok.convert_tokens_to_ids(processor.image_token)
        self.merge = getattr(processor.image_processor, "merge_size", 2)

    def row(self, image, text: str) -> dict:
        """One row: prompt ids from the processor, then the answer ids and the end token."""
        enc = self.processor(text=[self.text], images=[image], return_tensors="pt")
        prompt = enc["input_ids"][0].tolist()
        expected = int(enc["image_grid_thw"][0].prod()) // self.merge**2
        if prompt.count(self.image_id) != expected or expected == 0:
            raise PlaceholderError(
                f"prompt holds {prompt.count(self.image_id)} image tokens, the image needs "
                f"{expected}: check model.prompt and model.prompt_format"
            )
        answer = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.image_id in answer:
            raise PlaceholderError(f"the answer {text[:40]!r} holds the image token")
        ids = prompt + answer + [self.end_id]
        tail = [0] * (len(answer) + 1)
        per_token = {  # e.g. mm_token_type_ids: the rope index places image tokens by it
            k: v[0].tolist() + tail
            for k, v in enc.items()
            if k not in ("input_ids", "attention_mask") and v.shape[:2] == (1, len(prompt))
        }
        return {
            "input_ids": ids,
            "labels": [IGNORE] * len(prompt) + answer + [self.end_id],
            "pixel_values": enc["pixel_values"],
            "image_grid_thw": enc["image_grid_thw"],
            "per_token": per_token,
        }

    def __call__(self, rows: list[dict]) -> dict:
        """The batch of `rows`, right-padded; padding is masked and labelled -100."""
        built = [self.row(r["image"], r["text"]) for r in rows]
        width = max(len(b["input_ids"]) for b in built)
        ids = torch.full((len(built), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(built), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(built), width), dtype=torch.long)
        extra = {k: torch.zeros_like(ids) for k in built[0]["per_token"]}
        for i, b in enumerate(built):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
            for key, values in b["per_token"].items():
                extra[key][i, :n] = torch.tensor(values)
        return {
            **extra,
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            "pixel_values": torch.cat([b["pixel_values"] for b in built]),
            "image_grid_thw": torch.cat([b["image_grid_thw"] for b in built]),
        }


def generation_batch(processor, images: list, prompt: str | None, prompt_format: str = "chat"):
    """The left-padded processor batch greedy decoding reads for `images`."""
    text = prompt_text(processor, prompt, prompt_format)
    processor.tokenizer.padding_side = "left"
    return processor(text=[text] * len(images), images=images, return_tensors="pt", padding=True)
