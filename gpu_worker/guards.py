"""Guards that stop a training run which cannot be learning, each with one clear line.

- `check_labels(labels)`: a batch with no unmasked label token (every label -100) teaches
  nothing: the collator masked the answer too (the published run's loss 0.0 at every step).
- `StepGuard.after_step(step, grad_norm, lr)`, fed each micro-batch's loss by `add_loss`: the
  optimizer step's loss exactly 0, NaN or infinite, or its gradient norm 0 (or not finite),
  `k` optimizer steps in a row; a learning rate of 0 once warm-up is over.
Each raises `GuardError`, whose message is the line the worker prints before exiting 1.
"""

from __future__ import annotations

import math

IGNORE = -100


class GuardError(RuntimeError):
    """The run cannot be learning; the message says why, in one line."""


def check_labels(labels) -> None:
    """Raise when the batch's labels (a tensor) hold no unmasked token."""
    if not bool((labels != IGNORE).any()):
        raise GuardError(
            "guard: a batch has no unmasked label token (every label is -100): the collator "
            "masks the answer, nothing can be learned"
        )


class StepGuard:
    """Counts bad optimizer steps in a row; see the module docstring."""

    def __init__(self, k: int, warmup_steps: int) -> None:
        self.k, self.warmup_steps = k, warmup_steps
        self.losses: list[float] = []
        self.bad = 0
        self.last_loss: float | None = None

    def add_loss(self, loss: float) -> None:
        """One micro-batch's loss (gradient accumulation adds several per step)."""
        self.losses.append(loss)

    def after_step(self, step: int, grad_norm: float, lr: float) -> None:
        """Check optimizer step `step` (1-based): its losses, gradient norm and learning rate."""
        losses, self.losses = self.losses, []
        loss = sum(losses) / len(losses) if losses else math.nan
        self.last_loss = loss
        if step > self.warmup_steps and lr == 0:
            raise GuardError(
                f"guard: learning rate is 0 at step {step}, after {self.warmup_steps} warm-up "
                "steps: check train.lr and train.scheduler"
            )
        problem = None
        if not math.isfinite(loss) or loss == 0:
            problem = f"loss {loss}"
        elif not math.isfinite(grad_norm) or grad_norm == 0:
            problem = f"gradient norm {grad_norm}"
        self.bad = self.bad + 1 if problem else 0
        if self.bad >= self.k:
            raise GuardError(
                f"guard: {problem} for {self.bad} steps in a row (to step {step}; "
                f"train.guard_steps: {self.k}): the model is not learning"
            )
