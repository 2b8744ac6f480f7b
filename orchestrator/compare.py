"""`orch compare RUN_A RUN_B`: the paired ΔCER of two fetched runs on the lines both scored.

Contract:
- Runs are fetched folders `results/<id>/` (named by id, unique prefix or `latest:PLAYBOOK`);
  their predictions.jsonl lines are matched by `index` (the dataset row), per method: the method
  named by `--method`, else every method both runs have. The last line per (index, method) wins,
  as in the worker's summary; a failed line counts as an empty prediction (its `char_edits` are
  its `chars`); a line whose reference could not be read is not scored.
- Nothing is compared that would give a wrong number: matched lines whose references or
  normalised lengths differ (not the same data or normalisation), lines without edit counts
  (written by a worker before `char_edits`/`chars` were recorded) and runs that share no line
  are errors naming the run and the reason.
- Δ = CER(B) - CER(A) on the matched lines with its 95% interval and two-sided p-value from the
  paired bootstrap of `contract.paired` (resamples and seed of run A's `run.bootstrap`, else the
  defaults); each comparison says how many lines each run scored and how many matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpu_worker.contract.fsio import read_jsonl
from gpu_worker.contract.paired import DEFAULT_SEED, Paired, paired_bootstrap
from gpu_worker.contract.schema import SchemaError, loads_bounded, method_names
from gpu_worker.contract.spec import DEFAULT_RESAMPLES

from .config import Config
from .errors import ConfigError, OrchError
from .fetch import results_dir

MAX_RESAMPLES = 20000


@dataclass(frozen=True)
class MethodComparison:
    """One method of run B against the same method of run A (or the methods `--method` named)."""

    method: str
    n_a: int  # lines run A scored
    n_b: int
    cer_a: float  # on the matched lines
    cer_b: float
    paired: Paired

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return {
            "method": self.method,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "matched": self.paired.n,
            "cer_a": round(self.cer_a, 6),
            "cer_b": round(self.cer_b, 6),
            **self.paired.to_json(),
        }


@dataclass(frozen=True)
class RunComparison:
    """`orch compare`: run ids and one comparison per method."""

    run_a: str
    run_b: str
    methods: list[MethodComparison]

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "methods": [m.to_json() for m in self.methods],
        }


def fetched_folder(config: Config, ref: str) -> Path:
    """The fetched folder `ref` names: a run id, a unique prefix, or `@latest[:PLAYBOOK]`."""
    from .records import names_latest, resolve

    if names_latest(ref):
        ref = resolve(config, ref, parents=True)
    base = results_dir(config)
    folders = sorted(p for p in base.glob("*/results.json") if p.parent.name.startswith(ref))
    exact = [p for p in folders if p.parent.name == ref]
    found = exact or folders
    where = config.defaults.results_dir
    if len(found) == 1:
        return found[0].parent
    if not found:
        raise ConfigError(f"no fetched run '{ref}' in {where}/; run `orch fetch {ref}` first")
    names = ", ".join(p.parent.name for p in found[:5])
    raise ConfigError(f"run '{ref}' is ambiguous in {where}/: {names}")


def _results(folder: Path) -> dict:
    try:
        doc = loads_bounded((folder / "results.json").read_bytes())
    except (OSError, SchemaError) as exc:
        raise OrchError(f"{folder}/results.json: cannot be read ({exc})") from None
    return doc if isinstance(doc, dict) else {}


def line_counts(folder: Path, method: str) -> dict[int, tuple[int, int, str]]:
    """index -> (char_edits, chars, reference) of `method`'s scored lines in predictions.jsonl."""
    path = folder / "predictions.jsonl"
    try:
        lines = read_jsonl(path)
    except (OSError, ValueError) as exc:
        raise OrchError(f"{path}: cannot be read ({exc})") from None
    mine = {x.get("index"): x for x in lines if x.get("method") == method}
    out = {}
    for index, line in mine.items():
        if line.get("reference") is None:
            continue
        edits, chars = line.get("char_edits"), line.get("chars")
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (edits, chars)
        ):
            raise OrchError(
                f"{path}: line {index} of {method} has no edit counts (char_edits, chars): "
                "written by an older worker; rerun it to compare line by line"
            )
        out[index] = (edits, chars, line["reference"])
    return out


def _compare_method(folders: tuple[Path, Path], method: str, boot: tuple[int, int]):
    a, b = (line_counts(f, method) for f in folders)
    both = sorted(set(a) & set(b), key=str)
    if not both:
        raise OrchError(
            f"{method}: {folders[0].name} and {folders[1].name} scored no line in common "
            "(not the same data or sample)"
        )
    differ = [i for i in both if a[i][1:] != b[i][1:]]
    if differ:
        raise OrchError(
            f"{method}: {len(differ)} of {len(both)} matched lines have different references or "
            f"normalised lengths (first: line {differ[0]}): not the same data or normalisation; "
            "nothing compared"
        )
    edits_a, edits_b = [a[i][0] for i in both], [b[i][0] for i in both]
    lengths = [a[i][1] for i in both]
    total = sum(lengths) or 1
    paired = paired_bootstrap(edits_a, edits_b, lengths, *boot)
    return MethodComparison(
        method, len(a), len(b), sum(edits_a) / total, sum(edits_b) / total, paired
    )


def compare_runs(config: Config, ref_a: str, ref_b: str, method: str | None = None):
    """The `RunComparison` of two fetched runs (see the module docstring)."""
    folders = (fetched_folder(config, ref_a), fetched_folder(config, ref_b))
    docs = [_results(f) for f in folders]
    names = [method_names(d) for d in docs]
    if method is not None:
        for folder, have in zip(folders, names, strict=True):
            if method not in have:
                raise ConfigError(
                    f"--method {method}: not in {folder.name} (its methods: {', '.join(have)})"
                )
        methods = [method]
    else:
        methods = [m for m in names[0] if m in names[1]]
        if not methods:
            raise ConfigError(
                f"{folders[0].name} and {folders[1].name} have no method in common; pass --method M"
            )
    boot = (docs[0].get("run") or {}).get("bootstrap") or {}
    resamples = boot.get("resamples") if isinstance(boot.get("resamples"), int) else None
    seed = boot.get("seed") if isinstance(boot.get("seed"), int) else None
    resamples = min(resamples or DEFAULT_RESAMPLES, MAX_RESAMPLES)  # the file came from a host
    settings = (resamples, DEFAULT_SEED if seed is None else seed)
    compared = [_compare_method(folders, m, settings) for m in methods]
    return RunComparison(folders[0].name, folders[1].name, compared)
