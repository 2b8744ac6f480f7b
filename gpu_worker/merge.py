"""Merge a sharded run's shard outputs into one run folder: `python -m gpu_worker merge`.

The metrics are recomputed from the merged predictions with the worker's own code
(`summary.summarize_run` and `recommend`), never averaged from the shards' results: the lines are
put back in the order a single host writes them (by index within each method), so every score,
interval and comparison equals, to the last digit, a single-host run over the same indices with
the same settings. What differs by nature: timings (`time_per_image_s`, `images_per_s`, hence
`recommendation.fastest_within_tolerance`) and provenance (`run.run_id`, `host`, times;
`run.shards` lists each shard's run id, host and indices hash).

This module is the one place besides `provenance.run_block` that builds a `run` block. It runs
where the worker's packages are (numpy, jiwer, rapidfuzz): the orchestrator never imports it,
it calls `python -m gpu_worker merge` (see orchestrator/merge.py). A merge that cannot be done
raises `MergeError` with one line naming the shard and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .contract import layout
from .contract.fsio import atomic_dir, read_jsonl, write_jsonl
from .contract.postprocess import Derived, scored_methods
from .contract.schema import SchemaError, validate_results
from .contract.spec import PlaybookError, parse_playbook
from .data import selection_hash
from .summary import recommend, summarize_run

SHARD_KEYS = ("shard", "num_shards")
Shard = tuple[dict, dict, list[dict]]  # (playbook, results, prediction lines)


class MergeError(Exception):
    """The shards cannot be merged into one run; the message names the shard or parent."""


def read_shard(folder: Path) -> Shard:
    """(playbook, results, prediction lines) of one shard's run folder."""
    try:
        book = yaml.safe_load((folder / layout.PLAYBOOK).read_text(encoding="utf-8"))
        results = json.loads((folder / layout.RESULTS).read_text(encoding="utf-8"))
        lines = read_jsonl(folder / layout.PREDICTIONS)
    except FileNotFoundError as exc:
        raise MergeError(
            f"{folder.name}: {Path(exc.filename).name} missing; fetch it again"
        ) from None
    except (ValueError, yaml.YAMLError) as exc:
        raise MergeError(f"{folder.name}: unreadable shard output ({exc})") from None
    return book, results, lines


def _unsharded(book: dict) -> dict:
    """The playbook as a single host would run it: without data.shard/num_shards."""
    out = json.loads(json.dumps(book))
    for key in SHARD_KEYS:
        (out.get("data") or {}).pop(key, None)
    return out


def _checked_lines(parent: str, name: str, shards: list[Shard], ids: list[str]):
    """(spec, merged lines in single-host order, playbook); MergeError if the shards disagree."""
    book = _unsharded(shards[0][0])
    for i, (other, _, _) in enumerate(shards):
        if _unsharded(other) != book or (other.get("data") or {}).get("shard") != i:
            raise MergeError(f"{ids[i]}: its playbook is not shard {i} of {parent}")
    try:
        spec = parse_playbook(book, name)
    except PlaybookError as exc:
        raise MergeError(f"{parent}: its playbook is invalid ({exc})") from None
    lines = sorted((line for _, _, part in shards for line in part), key=lambda x: x["index"])
    for method in scored_methods(spec.methods):
        seen = [line["index"] for line in lines if line["method"] == method.name]
        if len(seen) != len(set(seen)):
            raise MergeError(f"{parent}: shards overlap in method {method.name}")
    return spec, lines, book


def _summed(bodies: list[dict]) -> dict:
    """A derived method's `postprocess` block over the shards: counts added up."""
    blocks = [b.get("postprocess") or {} for b in bodies]
    stages: dict[str, dict[str, int]] = {}
    for block in blocks:
        for stage, counts in (block.get("stages") or {}).items():
            mine = stages.setdefault(stage, {})
            for key, value in counts.items():
                mine[key] = mine.get(key, 0) + value
    return {
        "stages": stages,
        "train_lines": max((b.get("train_lines", 0) for b in blocks), default=0),
        "changed": sum(b.get("changed", 0) for b in blocks),
    }


def merge_results(parent: str, name: str, shards: list[Shard], ids: list[str]) -> tuple:
    """(results, merged prediction lines, playbook) from every shard's output, in shard order."""
    spec, lines, book = _checked_lines(parent, name, shards, ids)
    results = summarize_run(spec, lines)
    for method in scored_methods(spec.methods):  # how each shard ran it; the shards' words
        paths = sorted({str(s[1][method.name].get("lora_path")) for s in shards} - {"None"})
        results[method.name]["lora_path"] = ", ".join(paths) or None
        if isinstance(method, Derived):
            results[method.name]["postprocess"] = _summed([s[1][method.name] for s in shards])
    indices = sorted({line["index"] for line in lines})
    first = shards[0][1]["run"]
    results["run"] = {
        **first,
        "run_id": parent,
        "playbook_sha256": spec.digest,
        "host": ",".join(sorted({str(s[1]["run"].get("host")) for s in shards})),
        "data": {
            **{k: v for k, v in first.get("data", {}).items() if k not in SHARD_KEYS},
            "n_samples": len(indices),
            "indices_sha256": selection_hash(spec.data, indices),
        },
        "recommendation": recommend(results, spec.cer_tolerance, spec.baseline_method),
        "started_at": min(s[1]["run"].get("started_at", 0) for s in shards),
        "ended_at": max(s[1]["run"].get("ended_at", 0) for s in shards),
        "shards": [
            {
                "run_id": rid,
                "host": s[1]["run"].get("host"),
                "indices_sha256": s[1]["run"].get("data", {}).get("indices_sha256"),
            }
            for rid, s in zip(ids, shards, strict=True)
        ],
    }
    try:
        validate_results(results)
    except SchemaError as exc:
        raise MergeError(f"{parent}: merged results are invalid ({exc})") from None
    return results, lines, book


def merge_folders(parent: str, name: str, folders: list[Path], dest: Path) -> Path:
    """Write `dest` (results.json, predictions.jsonl, playbook.yaml) from the shard folders, in
    shard order, atomically: `dest` appears whole or not at all."""
    shards = [read_shard(f) for f in folders]
    results, lines, book = merge_results(parent, name, shards, [f.name for f in folders])
    with atomic_dir(dest) as tmp:
        (tmp / layout.RESULTS).write_text(json.dumps(results, ensure_ascii=False))
        write_jsonl(tmp / layout.PREDICTIONS, lines)
        (tmp / layout.PLAYBOOK).write_text(yaml.safe_dump(book, sort_keys=False))
    return dest
