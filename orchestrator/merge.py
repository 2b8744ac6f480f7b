"""Merge a sharded run's fetched shards into one `results/<parent>/`.

The metrics are recomputed from the merged predictions with the worker's own code
(`gpu_worker.summary.summarize` and `recommend`), never averaged from the shards' results: the
lines are put back in the order a single host writes them (by index within each method), so
every score, interval and comparison equals, to the last digit, a single-host run over the same
indices with the same settings. What differs by nature: timings (`time_per_image_s`,
`images_per_s`, hence `recommendation.fastest_within_tolerance`) and provenance (`run.run_id`,
`host`, times; `run.shards` lists each shard's run id, host and indices hash).

The scoring runs here, on the laptop: it needs the worker's scoring packages (jiwer,
rapidfuzz; no torch). Without them the merge stops with the command that installs them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import yaml

from gpu_worker.outputs import read_jsonl
from gpu_worker.schema import SchemaError, loads_bounded, validate_results
from gpu_worker.spec import PlaybookError, parse_playbook

from .config import Config
from .errors import OrchError
from .fetch import FetchResult, results_dir
from .shards import ShardedRun, load_parent, shards_dir

SHARD_KEYS = ("shard", "num_shards")


def _read_shard(folder: Path) -> tuple[dict, dict, list[dict]]:
    """(playbook, results, prediction lines) of one fetched shard."""
    try:
        book = yaml.safe_load((folder / "playbook.yaml").read_text(encoding="utf-8"))
        results = loads_bounded((folder / "results.json").read_bytes())
        lines = read_jsonl(folder / "predictions.jsonl")
    except FileNotFoundError as exc:
        raise OrchError(
            f"{folder.name}: {Path(exc.filename).name} missing; fetch it again"
        ) from None
    except (ValueError, yaml.YAMLError) as exc:
        raise OrchError(f"{folder.name}: unreadable shard output ({exc})") from None
    return book, results, lines


def _unsharded(book: dict) -> dict:
    """The playbook as a single host would run it: without data.shard/num_shards."""
    out = json.loads(json.dumps(book))
    for key in SHARD_KEYS:
        (out.get("data") or {}).pop(key, None)
    return out


def merge_results(run: ShardedRun, shards: list[tuple[dict, dict, list[dict]]]) -> tuple:
    """(results, merged prediction lines, playbook) from every shard's output, in shard order."""
    try:
        from gpu_worker.data import selection_hash
        from gpu_worker.summary import recommend, summarize_run
    except ImportError as exc:  # pragma: no cover - depends on the laptop's packages
        raise OrchError(f"merging needs the worker's scoring code: {exc}") from None
    book = _unsharded(shards[0][0])
    for i, (other, _, _) in enumerate(shards):
        if _unsharded(other) != book or (other.get("data") or {}).get("shard") != i:
            raise OrchError(f"{run.shards[i]}: its playbook is not shard {i} of {run.parent}")
    try:
        spec = parse_playbook(book, run.playbook)
    except PlaybookError as exc:
        raise OrchError(f"{run.parent}: its playbook is invalid ({exc})") from None
    lines = sorted((line for _, _, part in shards for line in part), key=lambda x: x["index"])
    for method in spec.methods:
        seen = [line["index"] for line in lines if line["method"] == method.name]
        if len(seen) != len(set(seen)):
            raise OrchError(f"{run.parent}: shards overlap in method {method.name}")
    try:
        results = summarize_run(spec, lines)
    except ImportError as exc:
        raise OrchError(
            f"merging recomputes the metrics here and needs the worker's scoring packages "
            f"({exc.name} missing): pip install jiwer rapidfuzz"
        ) from None
    indices = sorted({line["index"] for line in lines})
    first = shards[0][1]["run"]
    data = spec.data
    results["run"] = {
        **first,
        "run_id": run.parent,
        "playbook_sha256": spec.digest,
        "host": ",".join(sorted({str(s[1]["run"].get("host")) for s in shards})),
        "data": {
            **{k: v for k, v in first.get("data", {}).items() if k not in SHARD_KEYS},
            "n_samples": len(indices),
            "indices_sha256": selection_hash(data, indices),
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
            for rid, s in zip(run.shards, shards, strict=True)
        ],
    }
    try:
        validate_results(results)
    except SchemaError as exc:
        raise OrchError(f"{run.parent}: merged results are invalid ({exc})") from None
    return results, lines, book


def shard_problems(base: Path, run: ShardedRun) -> tuple[list[str], list[str]]:
    """(shards not fetched yet, shards that did not succeed) among `run`'s fetched folders
    under `base`: a shard merges only when it was fetched with exit code 0 and results.json
    (docs/scaling.md: a failed shard never makes a score look better)."""
    waiting, failed = [], []
    for rid in run.shards:
        folder = base / rid
        if not folder.is_dir():
            waiting.append(rid)
            continue
        try:
            code = (folder / "exit_code").read_text().strip()
        except OSError:
            code = "none"
        if code != "0" or not (folder / "results.json").is_file():
            failed.append(f"{rid} (exit code {code})" if code != "0" else f"{rid} (no results)")
    return waiting, failed


def merge(config: Config, run: ShardedRun) -> Path:
    """Write `results/<parent>/` from the fetched shards (temp folder + rename); its path."""
    base = results_dir(config)
    dest = base / run.parent
    if dest.exists():
        return dest
    waiting, failed = shard_problems(base, run)
    if failed:
        raise OrchError(
            f"{run.parent}: not merged: shard(s) did not succeed: {', '.join(failed)}; "
            f"`orch run --resume {run.parent} --shard N` runs one again"
        )
    if waiting:
        raise OrchError(f"{run.parent}: shard(s) not fetched: {', '.join(waiting)}")
    results, lines, book = merge_results(run, [_read_shard(base / rid) for rid in run.shards])
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{run.parent}.merge-"))
    try:
        (tmp / "results.json").write_text(json.dumps(results, ensure_ascii=False))
        with open(tmp / "predictions.jsonl", "w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        (tmp / "playbook.yaml").write_text(yaml.safe_dump(book, sort_keys=False))
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def merge_fetched(config: Config, run_ids: tuple[str, ...] = ()) -> list[FetchResult]:
    """Merge the named parents (or every parent whose shards are all fetched) not yet merged.

    A named parent that cannot be merged (a shard missing, failed or unfetched) is an error; an
    unnamed one is only reported as waiting.
    """
    named = [p for p in (load_parent(config, r) for r in run_ids) if p is not None]
    if not run_ids:
        folder = shards_dir(config)
        names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        named = [p for p in (load_parent(config, n) for n in names) if p is not None]
    out = []
    for run in named:
        dest = results_dir(config) / run.parent
        if dest.exists():
            if run_ids:
                out.append(FetchResult(run.parent, "already merged", "succeeded", str(dest)))
            continue
        waiting, failed = shard_problems(results_dir(config), run)
        if waiting and not failed and not run_ids:
            continue
        try:
            path = merge(config, run)
            out.append(FetchResult(run.parent, "merged", "succeeded", str(path), run.shards))
        except OrchError as exc:
            out.append(FetchResult(run.parent, "error", "not merged", error=str(exc)))
    return out
