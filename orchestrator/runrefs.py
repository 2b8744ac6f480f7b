"""References to other runs: `model.checkpoints: {run: RUN_ID, path: checkpoints}` in a playbook,
`orch run --after RUN` and `orch publish RUN` (`fetched_id`: a fetched folder needs no record).

A reference names a run as every command does (`records.resolve`: an id, a unique prefix or
suffix, `@latest`, `@latest:PLAYBOOK` or `latest:PLAYBOOK`). A checkpoints reference resolves,
here on the laptop, to the remote folder `<remote_dir>/runs/<id>/<path>` of that run, which
must have run on the host the new run goes to (a clear error otherwise); the launch pre-check
then checks on the host that the run's folder is there. The playbook's other `checkpoints`
entries are kept as written.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from gpu_worker.contract.layout import RUN_ID_RE

from .config import Config, HostConfig
from .errors import ConfigError, JobNotFound
from .records import LATEST, LEGACY_LATEST, AmbiguousRun, RunRecord, find_record, resolve

DEFAULT_PATH = "checkpoints"


def find_run(config: Config, ref: str) -> RunRecord:
    """The run `ref` names: an id, a unique prefix or suffix, `@latest[:PLAYBOOK]` or
    `latest:PLAYBOOK` (the one resolver: `records.resolve`)."""
    return find_record(config, ref)


def latest_ids(config: Config, refs: tuple[str, ...]) -> tuple[str, ...]:
    """The run ids `refs` name (a sharded run's parent included), each resolved once."""
    return tuple(resolve(config, r, parents=True) for r in refs)


def fetched_ids(config: Config, refs: tuple[str, ...]) -> tuple[str, ...]:
    """The fetched run ids `refs` name, for `orch publish` (see `fetched_id`)."""
    from .fetch import results_dir

    return tuple(fetched_id(config, results_dir(config), r) for r in refs)


def fetched_id(config: Config, base: Path, ref: str) -> str:
    """A folder of the results folder `base` as written (a fetched run needs no local record),
    else `records.resolve` over the local records and sharded parents. Ambiguous, or an
    `@latest` with no run: `JobNotFound` (exit 2); a name no record matches is returned as
    written, for publish to refuse (an invalid id, or no fetched results: `orch fetch` first)."""
    if RUN_ID_RE.match(ref) and (base / ref / "results.json").is_file():
        return ref
    try:
        return resolve(config, ref, parents=True)
    except AmbiguousRun:
        raise
    except JobNotFound:
        if ref.startswith((LATEST, LEGACY_LATEST)):
            raise
        return ref


def remote_runs_dir(host: HostConfig) -> str:
    """`<remote_dir>/runs` as the worker reads a path (a relative remote_dir is under ~)."""
    rd = host.remote_dir.rstrip("/")
    return f"{rd if rd.startswith(('/', '~')) else '~/' + rd}/runs"


def _ref_path(config: Config, ref: dict, host: HostConfig, where: str) -> tuple[str, str]:
    """(remote folder, run id) of one `{run: ..., path: ...}` entry."""
    unknown = sorted(set(ref) - {"run", "path"})
    if unknown or not isinstance(ref.get("run"), str):
        raise ConfigError(
            f"{where}: model.checkpoints: expected {{run: RUN_ID or latest:PLAYBOOK, "
            f"path: {DEFAULT_PATH}}}, got {ref}"
        )
    path = str(ref.get("path") or DEFAULT_PATH)
    if path.startswith(("/", "~")) or ".." in PurePosixPath(path).parts:
        raise ConfigError(f"{where}: model.checkpoints.path: '{path}': not inside the run folder")
    record = find_run(config, ref["run"])
    if record.host != host.name:
        raise ConfigError(
            f"{where}: model.checkpoints: run {record.run_id} ran on {record.host}, not on "
            f"{host.name}; run this playbook with --host {record.host}"
        )
    return f"{remote_runs_dir(host)}/{record.run_id}/{path.rstrip('/')}", record.run_id


def resolve_refs(config: Config, doc: dict, host: HostConfig | None, where: str) -> tuple[str, ...]:
    """Replace the `{run: ...}` entries of `doc`'s model.checkpoints (in place) by the remote
    folders they name; the ids of the runs referenced."""
    model = doc.get("model")
    if not isinstance(model, dict):
        return ()
    given = model.get("checkpoints")
    items = given if isinstance(given, list) else [given]
    if not any(isinstance(i, dict) for i in items):
        return ()
    if host is None:
        raise ConfigError(f"{where}: model.checkpoints: {{run: ...}} needs one host (--host)")
    paths, runs = [], []
    for item in items:
        if isinstance(item, dict):
            path, run_id = _ref_path(config, item, host, where)
            paths.append(path)
            runs.append(run_id)
        else:
            paths.append(item)
    model["checkpoints"] = paths if isinstance(given, list) else paths[0]
    return tuple(dict.fromkeys(runs))
