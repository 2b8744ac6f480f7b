"""`orch publish --adapter RUN:checkpoint-N`: one trained LoRA adapter to the Hub repo.

The adapter is the folder `results/RUN/outputs/checkpoints/checkpoint-N` (`orch fetch RUN
--outputs`); only its `adapter_config.json` and `adapter_model.safetensors` are uploaded, with
a model card (README.md) naming the base model and the run, and the evaluation table of every
fetched evaluation run whose `run.model.checkpoints` holds that adapter (its CER/WER also go to
`model-index`). Nothing is read from the adapter to choose a path; the names are checked first.
Token rules are the Hub card's (`hub.py`): HF_TOKEN or the login, never printed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from gpu_worker.contract.layout import RUN_ID_RE

from . import hub, readme
from .artifacts import OUTPUTS_DIR
from .config import Config
from .errors import PublishError
from .fetch import results_dir

CHECKPOINT_RE = re.compile(r"^checkpoint-[0-9]+$")
FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class AdapterPlan:
    """What `--adapter` uploads: the folder, the card's text and its evaluation tables."""

    run_id: str
    checkpoint: str
    folder: Path
    base_model: str | None
    tables: list[readme.RunTable]


def parse_adapter(value: str) -> tuple[str, str]:
    """`RUN:checkpoint-N` -> (run id, checkpoint name); PublishError naming what is wrong."""
    run_id, sep, name = value.partition(":")
    if not sep or not CHECKPOINT_RE.match(name):
        raise PublishError(
            f"--adapter {value}: expected RUN:checkpoint-N, e.g. train-0427:checkpoint-500"
        )
    if not RUN_ID_RE.match(run_id):
        raise PublishError(f"--adapter {value}: '{run_id}' is not a run id")
    return run_id, name


def plan_adapter(config: Config, value: str) -> AdapterPlan:
    """Find the fetched adapter folder and the evaluations of it; write nothing."""
    from .publish import load_runs

    run_id, name = parse_adapter(value)
    folder = results_dir(config) / run_id / OUTPUTS_DIR / "checkpoints" / name
    where = f"{config.defaults.results_dir}/{run_id}/{OUTPUTS_DIR}/checkpoints/{name}"
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise PublishError(
            f"{where}: no {', '.join(missing)}; fetch the training run first (orch fetch {run_id})"
        )
    try:
        base = json.loads((folder / FILES[0]).read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise PublishError(f"{where}/{FILES[0]}: invalid ({exc})") from None
    suffix = f"{run_id}/checkpoints/{name}"
    tables = [
        readme.RunTable(r.run_id, r.playbook, r.results)
        for r in load_runs(config).runs
        if any(
            str(c).rstrip("/").endswith(suffix)
            for c in (r.results.get("run", {}).get("model") or {}).get("checkpoints") or []
        )
    ]
    return AdapterPlan(run_id, name, folder, base if isinstance(base, str) else None, tables)


def card_body(plan: AdapterPlan) -> str:
    """The card's markdown: what the adapter is, how to load it, how it scored."""
    lines = [
        f"# {plan.checkpoint} of training run {plan.run_id}",
        "",
        f"A LoRA adapter (peft) for `{plan.base_model or 'its base model'}`, trained with "
        "`orch` (`python -m gpu_worker train`).",
        "",
    ]
    if plan.tables:
        lines += ["## Evaluation", ""] + [readme.render_run(t) for t in plan.tables]
    else:
        lines += ["No evaluation of this adapter was fetched when it was published."]
    return "\n".join(lines) + "\n"


def publish_adapter(config: Config, value: str, create_pr: bool = False) -> str:
    """Upload the adapter and its card in one Hub commit; return the commit (or PR) URL."""
    if not config.hub:
        raise PublishError("orch.yaml: no hub.repo_id; name the Hub repository to publish to")
    plan = plan_adapter(config, value)
    return hub.upload_adapter(
        config.hub.repo_id,
        config.hub.repo_type,
        {f: plan.folder / f for f in FILES},
        card_body(plan),
        plan.tables,
        plan.base_model,
        create_pr=create_pr,
        message=f"Add LoRA adapter {plan.run_id}:{plan.checkpoint}",
    )
