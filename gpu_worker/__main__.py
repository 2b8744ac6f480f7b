"""`python -m gpu_worker run PLAYBOOK --out DIR [--resume]`, `score FILE.jsonl`, `tiny DIR`.

Exit codes: 0 success, 1 the run failed, 2 a usage or playbook error.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
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
    p_tiny = sub.add_parser("tiny", help="build the small local model with LoRA checkpoints")
    p_tiny.add_argument("folder")
    args = parser.parse_args(argv)

    if args.command == "score":
        return _score(args.file, args.normalize, args.method)
    if args.command == "tiny":
        from .tiny import build

        print(build(args.folder))
        return 0
    from .runner import PlaybookError, run
    from .tesseract import TesseractMissing

    try:
        results = run(args.playbook, args.out, resume=args.resume)
    except (PlaybookError, FileNotFoundError, TesseractMissing) as exc:
        print(f"gpu_worker: error: {exc}", file=sys.stderr)
        return 2
    for name, body in results.items():
        if name != "run":
            print(
                f"{name}: CER {body['cer']:.4f} WER {body['wer']:.4f} "
                f"exact {body['exact_match']:.3f} n={body['n']} failures={body['failures']} "
                f"{body['time_per_image_s']:.3f} s/image"
            )
    print(f"recommendation: {json.dumps(results['run']['recommendation'])}")
    return 0


def _score(path: str, form: str, method: str | None) -> int:
    from .metrics import score_pairs

    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                print(f"gpu_worker: error: {path}:{number}: invalid JSON", file=sys.stderr)
                return 2
            if method and row.get("method") != method:
                continue
            if row.get("error"):  # a sample that failed in the run: counted there, not here
                continue
            ref, pred = row.get("reference"), row.get("prediction")
            if not isinstance(ref, str) or not isinstance(pred, str):
                print(
                    f"gpu_worker: error: {path}:{number}: needs 'reference' and 'prediction'",
                    file=sys.stderr,
                )
                return 2
            pairs.append((ref, pred))
    print(json.dumps(score_pairs(pairs, form).to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
