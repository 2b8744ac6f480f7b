"""`python -m gpu_worker train PLAYBOOK --out DIR [--resume]`: LoRA fine-tuning that cannot
silently learn nothing.

Contract:
- The playbook has a `train:` section (rules and defaults: `trainspec.py`, `spec.SECTIONS`).
  Rows come from `data` like an evaluation's; the `data.holdout` rows
  (`data.holdout_split`) are never trained on, and the first `train.eval_samples` of them are
  decoded greedily at step 0 and every `train.eval_every` steps, scored by `metrics.score_pairs`
  with `scoring`'s normalisation.
- Prompts come from `prompts.prompt_text` with `model.prompt` / `model.prompt_format`, the
  builder evaluation uses; labels are the answer tokens only (`collator.AnswerCollator`).
- LoRA (peft) on `lora.target_modules`; default: the language model's attention and MLP
  projections, never the vision tower. A list of names is applied to the language model only;
  a string is a regular expression used as given (the way to ask for the vision tower).
- transformers' Trainer: `train.optimizer`, `lr`, `scheduler`, `warmup_steps`, `steps`,
  `batch_size`, `grad_accum`; bf16 on CUDA (`train.bf16: auto`), gradient checkpointing on
  request. Checkpoints are `DIR/checkpoints/checkpoint-N` (adapter in safetensors, with the
  Trainer's optimizer, scheduler and RNG state), every `save_every` steps and at the last one:
  the folder evaluation playbooks read. `--resume` continues from the last complete one.
- Progress: `orch-progress step=N total=T loss=L lr=R eval_cer=C eta_s=S` lines on stdout.
- Guards (`guards.py`) stop the run: one line on stderr, exit 1. A playbook error exits 2.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

from .contract.spec import DataSpec, PlaybookError
from .contract.trainspec import TrainSpec, parse_train
from .guards import GuardError, StepGuard, check_labels

LM_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
COMPLETE = "trainer_state.json"  # the Trainer writes it last into a checkpoint folder


def lora_targets(targets: str | list[str] | None) -> str:
    """peft's `target_modules` regex: language-model projections unless a regex is given."""
    if isinstance(targets, str):
        return targets
    names = "|".join(re.escape(t) for t in (targets or LM_TARGETS))
    return rf".*language_model.*\.({names})"


def last_checkpoint(folder: Path) -> Path | None:
    """The complete `checkpoint-N` with the highest N; later incomplete ones are removed."""
    found = sorted(
        (p for p in folder.glob("checkpoint-*") if p.name.rsplit("-", 1)[1].isdigit()),
        key=lambda p: int(p.name.rsplit("-", 1)[1]),
    )
    complete = [p for p in found if (p / COMPLETE).is_file()]
    last = complete[-1] if complete else None
    for p in found:
        if not (p / COMPLETE).is_file():
            shutil.rmtree(p)  # cut off while saving: the resumed run writes it again
    return last


def read_spec(path: str) -> TrainSpec:
    """The playbook at `path` as a TrainSpec (PlaybookError names file and field)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return parse_train(doc, Path(path).stem)
    except (OSError, yaml.YAMLError) as exc:
        raise PlaybookError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    except PlaybookError as exc:
        raise PlaybookError(f"{Path(path).name}: {exc}") from None


class Rows:
    """The training rows (a torch map-style dataset of `{"image", "text"}`)."""

    def __init__(self, samples, indices: list[int]) -> None:
        self.samples, self.indices = samples, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        return {"image": self.samples.image(index), "text": self.samples.text(index)}


def split_rows(spec: TrainSpec):
    """(samples, training indices, held-out slice indices)."""
    from .data import Samples, holdout_split, sample_indices

    fields = {f.name for f in dataclasses.fields(DataSpec)}
    samples = Samples(DataSpec(**{k: v for k, v in spec.data.items() if k in fields}))
    train, held = list(range(len(samples))), []
    if spec.data["holdout"]:
        train, held = holdout_split(len(samples), spec.data["holdout"])
    picked = sample_indices(len(train), spec.data["n_samples"], spec.data["seed"])
    return samples, [train[i] for i in picked], held[: spec.train["eval_samples"]]


def held_out_cer(model, processor, samples, indices: list[int], spec: TrainSpec) -> float:
    """Greedy CER of `model` on the held-out `indices`, scored by the worker's scorer."""
    import torch

    from .collator import generation_batch
    from .metrics import score_pairs

    pairs, size = [], spec.generation["batch_size"]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            batch = generation_batch(
                processor, [samples.image(i) for i in chunk], *_prompt(spec)
            ).to(model.device)
            out = model.generate(
                **batch, max_new_tokens=spec.generation["max_new_tokens"], do_sample=False
            )
            texts = processor.batch_decode(
                out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True
            )
            pairs += [(samples.text(i), t) for i, t in zip(chunk, texts, strict=True)]
    model.train(was_training)
    return score_pairs(pairs, spec.scoring["normalize"], spec.scoring["collapse_whitespace"]).cer


def _prompt(spec: TrainSpec) -> tuple[str | None, str]:
    return spec.model["prompt"], spec.model["prompt_format"]


def base_folder(spec: TrainSpec, root: str) -> str:
    """The base model: a hub name or local folder; a `model.tiny` one is built first if needed."""
    from .checkpoints import local_path, tiny_folder

    tiny = tiny_folder(spec.model, root)
    if tiny is not None:
        if not (tiny / "base").is_dir():
            from . import tiny as tiny_mod

            tiny_mod.build(tiny)
        return str(tiny / "base")
    return local_path(spec.model["base"], root) or spec.model["base"]


def load_model(spec: TrainSpec, base: str, cuda: bool):
    """The base model (bf16 on CUDA when asked) with fresh LoRA adapters, and its processor."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from .engine import load_processor

    bf16 = spec.train["bf16"] is True or (spec.train["bf16"] == "auto" and cuda)
    model = AutoModelForImageTextToText.from_pretrained(
        base, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    lora = spec.lora
    config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora_targets(lora["target_modules"]),
    )
    return get_peft_model(model, config), load_processor(base), bf16


def training_args(spec: TrainSpec, out: Path, bf16: bool, cuda: bool):
    """transformers' TrainingArguments for the playbook's `train` section."""
    from transformers import TrainingArguments

    t = spec.train
    return TrainingArguments(
        output_dir=str(out / "checkpoints"),
        max_steps=t["steps"],
        per_device_train_batch_size=t["batch_size"],
        gradient_accumulation_steps=t["grad_accum"],
        learning_rate=float(t["lr"]),
        lr_scheduler_type=t["scheduler"],
        warmup_steps=t["warmup_steps"],
        weight_decay=float(t["weight_decay"]),
        max_grad_norm=float(t["max_grad_norm"]),
        optim=t["optimizer"],
        logging_steps=t["log_every"],
        save_strategy="steps",
        save_steps=t["save_every"],
        save_total_limit=t["save_limit"],
        seed=t["seed"],
        data_seed=t["seed"],
        bf16=bf16,
        activation_checkpointing=t["gradient_checkpointing"],
        activation_checkpointing_kwargs={"use_reentrant": False},
        remove_unused_columns=False,
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not cuda,
    )


def run(playbook: str, out: str, resume: bool = False, collator=None) -> Path:
    """Train; return the last checkpoint folder. `collator` replaces the answer collator
    (tests). Raises PlaybookError (usage) or GuardError (the run cannot be learning)."""
    import torch
    from transformers import Trainer, set_seed

    from .collator import AnswerCollator
    from .traincallbacks import callbacks

    spec = read_spec(playbook)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples, train_idx, held_idx = split_rows(spec)
    if not train_idx:
        raise PlaybookError("data: no rows left to train on after data.holdout")
    cuda = torch.cuda.is_available()
    set_seed(spec.train["seed"])  # the LoRA weights' initialisation too
    model, processor, bf16 = load_model(spec, base_folder(spec, os.getcwd()), cuda)
    guard = StepGuard(spec.train["guard_steps"], spec.train["warmup_steps"])

    class GuardedTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            check_labels(inputs["labels"])
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = result[0] if return_outputs else result
            guard.add_loss(float(loss.detach().float()))
            return result

    def evaluate(m) -> float:
        return held_out_cer(m, processor, samples, held_idx, spec)

    trainer = GuardedTrainer(
        model=model,
        args=training_args(spec, out_dir, bf16, cuda),
        train_dataset=Rows(samples, train_idx),
        data_collator=collator or AnswerCollator(processor, *_prompt(spec)),
        callbacks=callbacks(
            guard,
            evaluate if held_idx and spec.train["eval_every"] else None,
            spec.train["eval_every"],
        ),  # fmt: skip
    )
    start = last_checkpoint(out_dir / "checkpoints") if resume else None
    print(
        f"training {spec.name}: {len(train_idx)} rows, {len(held_idx)} held out, "
        f"{spec.train['steps']} steps" + (f", resuming from {start.name}" if start else ""),
        flush=True,
    )
    trainer.train(resume_from_checkpoint=str(start) if start else None)
    return last_checkpoint(out_dir / "checkpoints")


def main(args) -> int:
    """The `train` sub-command: exit 0 done, 1 a guard stopped the run, 2 a playbook error."""
    from .collator import PlaceholderError

    try:
        last = run(args.playbook, args.out, resume=args.resume)
    except (PlaybookError, FileNotFoundError, PlaceholderError) as exc:
        print(f"gpu_worker: error: {exc}", file=sys.stderr)
        return 2
    except GuardError as exc:
        print(f"gpu_worker: error: {exc}", file=sys.stderr)
        return 1
    print(f"trained: {last}", flush=True)
    return 0
