"""`python -m gpu_worker run PLAYBOOK --out DIR [--resume]`, `train PLAYBOOK --out DIR
[--resume]` (LoRA fine-tuning, `train.py`), `score FILE.jsonl`, `tiny DIR`,
`merge --parent ID --playbook NAME --out DIR SHARD_DIR...` (a sharded run's shards into one).

Exit codes: 0 success, 1 the run failed (a method with no scored sample: results are still
written; or a preflight gate stopped it: no results.json), 2 a usage, playbook or data error,
75 another live worker holds the run folder, 128+N stopped by signal N (SIGINT or SIGTERM:
`orch cancel`), with one line on stderr instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .contract.layout import EXIT_BUSY

BUSY_EXIT = EXIT_BUSY


class _Signals:
    """SIGINT and SIGTERM raise KeyboardInterrupt (so cleanup code runs as on Ctrl-C); the
    signal last received is kept for the one line `main` prints."""

    def __init__(self) -> None:
        self.received: int | None = None
        if threading.current_thread() is threading.main_thread():  # only there can it be set
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._raise)

    def _raise(self, signum: int, frame: object) -> None:
        self.received = signum
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; a stop signal ends it with one line and exit 128 + the signal."""
    signals = _Signals()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        signum = signals.received or signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"gpu_worker: stopped by {name}; what was written so far is kept "
            "(predictions and checkpoints: --resume continues from them)",
            file=sys.stderr,
        )
        return 128 + signum


def _main(argv: list[str] | None) -> int:
    """Parse the command line and run one sub-command."""
    parser = argparse.ArgumentParser(prog="python -m gpu_worker")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a playbook's methods and write results")
    p_run.add_argument("playbook")
    p_run.add_argument("--out", required=True, help="folder for progress, predictions, results")
    p_run.add_argument("--resume", action="store_true", help="skip what predictions.jsonl has")
    p_score = sub.add_parser("score", help="score a predictions .jsonl (reference, prediction)")
    p_score.add_argument("file")
    p_score.add_argument("--normalize", default="nfc", choices=["nfc", "none"])
    p_score.add_argument("--method", help="only lines of this method")
    p_score.add_argument("--baseline", help="method the others are compared with (default: first)")
    p_score.add_argument("--bootstrap", type=int, default=1000, help="resamples (default 1000)")
    p_score.add_argument("--seed", type=int, help="bootstrap seed (default: the worker's)")
    p_train = sub.add_parser("train", help="LoRA fine-tuning from a playbook with `train:`")
    p_train.add_argument("playbook")
    p_train.add_argument("--out", required=True, help="folder for checkpoints/ and the log")
    p_train.add_argument("--resume", action="store_true", help="from the last checkpoint")
    p_tiny = sub.add_parser("tiny", help="build the small local model with LoRA checkpoints")
    p_tiny.add_argument("folder")
    p_merge = sub.add_parser("merge", help="merge a sharded run's shard folders into one run")
    p_merge.add_argument("shards", nargs="+", help="the shard run folders, in shard order")
    p_merge.add_argument("--parent", required=True, help="the sharded run's id")
    p_merge.add_argument("--playbook", required=True, help="the playbook's name")
    p_merge.add_argument("--out", required=True, help="the merged run folder (must not exist)")
    args = parser.parse_args(argv)

    if args.command == "merge":
        return _merge(args)

    if args.command == "score":
        return _score(args)
    if args.command == "train":
        from .train import main as train_main

        return train_main(args)
    if args.command == "tiny":
        from .tiny import build

        print(build(args.folder))
        return 0
    from .checkpoints import CheckpointError
    from .contract.schema import method_names
    from .contract.spec import PlaybookError
    from .outputs import RunFolderBusy
    from .preflight import PreflightError
    from .runner import run
    from .summary import failed_methods
    from .tesseract import TesseractMissing

    try:
        results = run(args.playbook, args.out, resume=args.resume)
    except RunFolderBusy as exc:
        print(f"gpu_worker: error: {exc}", file=sys.stderr)
        return BUSY_EXIT
    except (PlaybookError, FileNotFoundError, TesseractMissing, CheckpointError) as exc:
        print(f"gpu_worker: error: {exc}", file=sys.stderr)
        return 2
    except PreflightError as exc:
        print(f"gpu_worker: error: {exc}", file=sys.stderr)
        return 1
    for name in method_names(results):
        print(_line(name, results[name]))
    rec = results["run"]["recommendation"]
    print(f"recommendation: {rec['statement']}")
    failed = failed_methods(results)
    if failed:
        print(
            f"gpu_worker: error: no sample scored for {', '.join(failed)}; "
            "see failure_examples in results.json",
            file=sys.stderr,
        )
        return 1
    return 0


def _line(name: str, body: dict) -> str:
    """One method's figures, with intervals, for the log."""
    if body["cer"] is None:
        return f"{name}: failed ({body['failures']} of {body['n']}): {body['failure_examples'][:1]}"
    cer_ci = body.get("cer_ci") or [body["cer"], body["cer"]]
    text = (
        f"{name}: CER {body['cer']:.4f} ({cer_ci[0]:.4f}-{cer_ci[1]:.4f}) WER {body['wer']:.4f} "
        f"exact {body['exact_match']:.3f} n={body['n']} failures={body['failures']} "
        f"{body['time_per_image_s']:.3f} s/image"
    )
    vs = body.get("vs_baseline")
    if vs:
        text += (
            f"; vs {vs['method']}: {vs['delta_cer']:+.4f} ({vs['ci'][0]:+.4f} to "
            f"{vs['ci'][1]:+.4f}) p={vs['p_value']:.3g} "
            f"(Holm {vs.get('p_holm', vs['p_value']):.3g}), "
            + (
                "identical on every line"
                if vs.get("identical")
                else f"lines needed {vs['lines_needed']}"
            )
        )
    return text


class _Named:
    """A method known only by name (a predictions file has no settings)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def settings(self) -> dict:
        """No settings are known."""
        return {}


def _read_rows(path: str, methods: set[str] | None) -> list[dict]:
    """Prediction rows (of `methods`, or all) as summarize() takes them; ValueError names the
    line. Rows without an `index` are paired by position: the k-th row of each method is line k."""
    from .contract.fsio import read_jsonl

    rows: list[dict] = []
    position: dict[str, int] = {}
    for number, row in enumerate(read_jsonl(path), 1):
        if methods and row.get("method") not in methods:
            continue
        ref, pred = row.get("reference"), row.get("prediction")
        if not isinstance(ref, str) or not (isinstance(pred, str) or row.get("error")):
            raise ValueError(f"{path}: record {number}: needs 'reference' and 'prediction'")
        row = {**row, "method": str(row.get("method") or ""), "seconds": 0.0}
        position[row["method"]] = position.get(row["method"], -1) + 1
        row.setdefault("index", position[row["method"]])  # k-th line of each method pairs
        rows.append(row)
    return rows


def _score(args: argparse.Namespace) -> int:
    """Score a predictions file like the worker does: failures as empty predictions, intervals,
    paired comparisons with the baseline. One method (or `--method`): its object (compared with
    `--baseline` when given); several: one per method."""
    from . import stats
    from .summary import summarize

    wanted = {args.method, args.baseline} - {None} if args.method else None
    try:
        rows = _read_rows(args.file, wanted)
    except (OSError, ValueError) as exc:
        print(f"gpu_worker: error: {exc}", file=sys.stderr)
        return 2
    if args.bootstrap < 100:
        print(f"gpu_worker: error: --bootstrap {args.bootstrap}: use 100 or more", file=sys.stderr)
        return 2
    names = list(dict.fromkeys(row["method"] for row in rows)) or [args.method or ""]
    if args.baseline and args.baseline not in names:
        print(
            f"gpu_worker: error: --baseline {args.baseline}: not a method in {args.file}",
            file=sys.stderr,
        )
        return 2
    seed = stats.DEFAULT_SEED if args.seed is None else args.seed
    out = summarize(
        [_Named(n) for n in names],
        rows,
        args.normalize,
        True,
        args.baseline,
        args.bootstrap,
        seed,
    )
    for body in out.values():
        for key in ("settings", "time_per_image_s", "images_per_s"):
            body.pop(key)
    one = args.method if args.method in out else names[0] if len(names) == 1 else None
    print(json.dumps(out if one is None else out[one], indent=2, ensure_ascii=False))
    return 0


def _merge(args: argparse.Namespace) -> int:
    """Merge shard folders; one line and exit 1 when they cannot be merged, 2 when the scoring
    packages (the `worker` extra) are missing here."""
    from pathlib import Path

    folders = [Path(s) for s in args.shards]
    try:
        from .merge import MergeError, merge_folders

        try:
            merge_folders(args.parent, args.playbook, folders, Path(args.out))
        except MergeError as exc:
            print(f"gpu_worker: error: {exc}", file=sys.stderr)
            return 1
    except ImportError as exc:
        print(
            f"gpu_worker: error: merging recomputes the metrics and needs the worker's scoring "
            f"packages ({exc.name} missing): pip install 'orch[worker]'",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
