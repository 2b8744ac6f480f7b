"""The one prompt builder shared by evaluation and training, so their formats cannot drift.

`prompt_text(processor, prompt, prompt_format)` is the text of one row before the processor
expands the image placeholder:
- `chat`: the processor's chat template over one user turn (the image, then `prompt`), with the
  generation prompt added, exactly as `engine.Engine.preprocess` applies it;
- `raw`: `prompt` is a template in which `{image}` is replaced by `processor.image_token`
  exactly (and nothing else is added).

`prompt=None` is the engine's default prompt for `chat`; for `raw` a template is required.
"""

from __future__ import annotations

DEFAULT_PROMPT = "Extract the text in this image."
PROMPT_FORMATS = ("chat", "raw")


def prompt_text(processor, prompt: str | None, prompt_format: str = "chat") -> str:
    """The text of one row (image placeholder not yet expanded) for `prompt` in `prompt_format`."""
    if prompt_format == "chat":
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": prompt or DEFAULT_PROMPT}],
            }
        ]
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if prompt_format == "raw":
        if not prompt or "{image}" not in prompt:
            raise ValueError("model.prompt: a raw prompt must contain {image}")
        return prompt.replace("{image}", processor.image_token)
    raise ValueError(
        f"model.prompt_format: expected one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}"
    )
