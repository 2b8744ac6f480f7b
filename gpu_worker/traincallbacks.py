"""The Trainer callbacks of `train.py`: guards at every optimizer step, the held-out CER, the
progress lines, and a checkpoint at the last step.

Progress lines are `orch-progress key=value ...` on stdout (step, total, loss, lr, eval_cer,
eta_s), the line protocol `orch status` reads from the log (`contract.schema.progress_line`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from transformers import TrainerCallback

from .contract.schema import progress_line
from .guards import StepGuard


def grad_norm(model) -> float:
    """The L2 norm of the trainable parameters' gradients (0 when none has a gradient)."""
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


class GuardCallback(TrainerCallback):
    """Feeds each optimizer step's gradient norm and learning rate to the `StepGuard`."""

    def __init__(self, guard: StepGuard) -> None:
        self.guard = guard

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kw):
        lr = float(optimizer.param_groups[0]["lr"])
        self.guard.after_step(state.global_step + 1, grad_norm(model), lr)


class ProgressCallback(TrainerCallback):
    """Held-out CER at step 0 and every `eval_every` steps, progress lines, the last save."""

    def __init__(self, evaluate: Callable | None, eval_every: int) -> None:
        self.evaluate, self.eval_every = evaluate, eval_every
        self.cer: float | None = None
        self.started, self.begun_at = time.monotonic(), 0

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.started, self.begun_at = time.monotonic(), state.global_step
        if self.evaluate is not None and state.global_step == 0:
            self._eval(model, state)

    def on_step_end(self, args, state, control, model=None, **kw):
        step = state.global_step
        if self.evaluate is not None and (step % self.eval_every == 0 or step == state.max_steps):
            self._eval(model, state)
        if step == state.max_steps:
            control.should_save = True
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            print(
                progress_line(
                    step=state.global_step,
                    total=state.max_steps,
                    loss=float(logs["loss"]),
                    lr=float(logs.get("learning_rate", math.nan)),
                    eval_cer=self.cer,
                    eta_s=self._eta(state),
                ),
                flush=True,
            )

    def _eval(self, model, state) -> None:
        self.cer = float(self.evaluate(model))
        print(
            progress_line(step=state.global_step, total=state.max_steps, eval_cer=self.cer),
            flush=True,
        )

    def _eta(self, state) -> float:
        done = state.global_step - self.begun_at
        if done <= 0:
            return math.nan
        return (time.monotonic() - self.started) / done * (state.max_steps - state.global_step)


def callbacks(guard: StepGuard, evaluate: Callable | None, eval_every: int) -> list:
    """The callbacks of one training run."""
    return [GuardCallback(guard), ProgressCallback(evaluate, eval_every)]
