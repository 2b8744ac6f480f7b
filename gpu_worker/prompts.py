"""The text of one row before the processor expands the image placeholder: one function, used by
evaluation (`engine.py`) and training alike, so a model is scored in the format it learned.

- `chat` (the default): the processor's chat template over one user turn, an image then the
  prompt (`DEFAULT_PROMPT` when none), with the generation prompt added.
- `raw`: `prompt` is a template holding `{image}`, rendered exactly as written with `{image}`
  replaced by the processor's image token only (no `<|vision_start|>`/`<|vision_end|>` unless the
  template writes them), e.g. `"{image} "` for a model trained on `"<|image_pad|> " + text`.
  A raw template without `{image}` is a `PlaybookError` naming the field (`contract/spec.py`).
"""

from __future__ import annotations

from .contract.checks import IMAGE_FIELD
from .contract.spec import check_template

DEFAULT_PROMPT = "Extract the text in this image."


def prompt_text(processor, prompt: str | None, prompt_format: str = "chat") -> str:
    """The text of one row for `processor`, before its image placeholder is expanded."""
    check_template(prompt, prompt_format)
    if prompt_format == "raw":
        return prompt.replace(IMAGE_FIELD, processor.image_token)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": prompt or DEFAULT_PROMPT}],
        }
    ]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
