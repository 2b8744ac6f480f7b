"""A user's own training script, as `tests/test_command_jobs.py` runs it through a `command:`
playbook: a few LoRA steps on CPU on a base model folder, reporting progress with the
`orch-progress` line protocol and writing `<out>/checkpoints/checkpoint-N` (peft format), the
way a Trainer run leaves them. It knows nothing of orch beyond the printed line."""

import argparse
import os

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2_5_VLForConditionalGeneration

TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"

parser = argparse.ArgumentParser()
parser.add_argument("--base", required=True)
parser.add_argument("--steps", type=int, default=4)
parser.add_argument("--save-every", type=int, default=2)
parser.add_argument("--out", required=True)
args = parser.parse_args()

torch.manual_seed(0)
model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.base)
model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
batch = torch.randint(10, 100, (2, 12))  # character tokens of the tiny tokenizer
for step in range(1, args.steps + 1):
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    print(f"orch-progress step={step} total={args.steps} loss={loss.item():.4f}", flush=True)
    if step % args.save_every == 0 or step == args.steps:
        model.save_pretrained(os.path.join(args.out, "checkpoints", f"checkpoint-{step}"))
