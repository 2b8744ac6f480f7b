"""Playbooks: YAML job descriptions under the project's `playbooks/` (then those bundled with
orch, `bundled_playbooks/`), loaded with `yaml.safe_load` only.

A playbook names the model (`model.base`, `model.checkpoints`), the data and the methods to run.
Relative local paths in a playbook are relative to the pushed code folder on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from gpu_worker.contract import spec, trainspec
from gpu_worker.contract.layout import model_paths

from .config import Config, HostConfig
from .errors import ConfigError
from .names import check_name
from .runrefs import resolve_refs
from .yamlfile import load_yaml

BUNDLED = Path(__file__).parent / "bundled_playbooks"  # shipped inside the orch package


def playbook_path(config: Config, name: str) -> Path:
    """The file of a playbook given by name (`quickwin`) or path (`playbooks/quickwin.yaml`):
    the project's `playbooks/` first, then the ones bundled with orch."""
    candidates = [Path(name), config.root / name, config.root / "playbooks" / f"{name}.yaml"]
    for c in [*candidates, BUNDLED / f"{name}.yaml"]:
        if c.is_file():
            return c
    known = sorted({p.stem for d in (config.root / "playbooks", BUNDLED) for p in d.glob("*.yaml")})
    raise ConfigError(
        f"playbook '{name}' not found; known: {', '.join(known) or 'none in playbooks/'}"
    )


def load_raw(config: Config, name: str) -> dict:
    """The playbook as a mapping, or a one-line ConfigError naming the file."""
    path = playbook_path(config, name)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a mapping at the top level")
    return data


def local_model_paths(config: Config, name: str) -> list[str]:
    """Local paths (folders or globs) a playbook's model needs on the host."""
    model = load_raw(config, name).get("model") or {}
    if not isinstance(model, dict):
        raise ConfigError(f"{name}: model: expected a mapping with base and checkpoints")
    return model_paths(model)


DEFAULT_COMMAND = "{python} -m gpu_worker run {playbook} --out {out}"
TRAIN_COMMAND = "{python} -m gpu_worker train {playbook} --out {out}"  # a playbook with `train:`


@dataclass(frozen=True)
class Resolved:
    """A playbook with `--set` overrides applied: `doc` is what the host receives (the full
    spec of a gpu_worker playbook; a `command:` playbook as written), `spec` its typed form
    (None for a playbook with its own `command`)."""

    name: str
    doc: dict
    spec: spec.RunSpec | None = None
    overrides: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()  # runs whose folders model.checkpoints names (`runrefs.py`)
    file: str = ""  # the playbook file's stem when `name` differs (what --resume resolves)

    @property
    def own_command(self) -> bool:
        """Whether the playbook's exit status is its state (results.json optional): its own
        `command:`, or a `train:` playbook."""
        return self.spec is None

    @property
    def command(self) -> str:
        """The command template: playbook `command`, else gpu_worker's `train` for a playbook
        with a `train:` section, else gpu_worker's `run`."""
        if self.doc.get("command"):
            return str(self.doc["command"])
        return TRAIN_COMMAND if self.train else DEFAULT_COMMAND

    @property
    def train(self) -> bool:
        """Whether this is a training playbook (`train:`, run by `python -m gpu_worker train`)."""
        return "command" not in self.doc and trainspec.is_train(self.doc)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The playbook's `outputs:` (paths or globs relative to the run folder)."""
        return tuple(self.doc.get("outputs") or ())

    def to_yaml(self) -> str:
        """The resolved playbook as YAML."""
        return yaml.safe_dump(self.doc, sort_keys=False, allow_unicode=True)


def apply_override(data: dict, assignment: str, label: str) -> None:
    """Apply one `key.sub=value` to `data`, in place. The key must name a setting of the
    playbook spec (`gpu_worker.contract.spec.check_key`) and the value must be valid YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment}: expected key=value, e.g. data.n_samples=20")
    parts = key.split(".")
    problem = spec.check_key(data, parts)
    if problem:
        raise ConfigError(f"--set {key}: {label} has {problem}")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({first})") from None
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}  # a section the playbook leaves at its defaults
        node = node[part]
    node[parts[-1]] = value


def resolve(
    config: Config, name: str, overrides: tuple[str, ...] = (), host: HostConfig | None = None
) -> Resolved:
    """Load a playbook, apply `--set` overrides (playbook < command line), resolve its
    `model.checkpoints: {run: ...}` references for `host` (see `runrefs.py`) and resolve it into
    the full spec the worker receives (every default filled in, validated here, before anything
    is pushed). A playbook with its own `command` is sent as written."""
    path = playbook_path(config, name)
    data = load_raw(config, name)
    for assignment in overrides:
        apply_override(data, assignment, path.name)
    check_names(data, path)
    check_outputs(data.get("outputs"), path)
    refs = resolve_refs(config, data, host, path.name)
    # one name for the run id, the status column and the results: `name:` (or --set name=X)
    name = str(data.get("name") or path.stem)
    file = path.stem if name != path.stem else ""
    if "command" in data:
        return Resolved(name, data, None, tuple(overrides), refs, file)
    try:
        if trainspec.is_train(data):  # its exit status is its state, like a `command:` job's
            doc = trainspec.parse_train(data, path.stem).doc
            return Resolved(name, doc, None, tuple(overrides), refs, file)
        parsed = spec.parse_playbook(data, path.stem)
    except spec.PlaybookError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
    return Resolved(name, parsed.doc, parsed, tuple(overrides), refs, file)


def check_outputs(outputs: object, path: Path) -> None:
    """`outputs:` is a list of paths or globs inside the run folder."""
    if outputs is None:
        return
    if not isinstance(outputs, list) or not all(isinstance(o, str) and o for o in outputs):
        raise ConfigError(f"{path.name}: outputs: expected a list of paths like [checkpoints/]")
    for item in outputs:
        if item.startswith(("/", "~")) or ".." in Path(item).parts:
            raise ConfigError(
                f"{path.name}: outputs: '{item}' must be a path inside the run folder "
                "(relative, no '..')"
            )


def check_names(data: dict, path: Path) -> None:
    """The playbook's name and method names become file names and README text: refuse unsafe
    ones here, before anything is sent, naming the file and field."""
    check_name(path.stem, f"{path.name}: file name")
    if "name" in data:
        check_name(data["name"], f"{path.name}: name")
    methods = data.get("methods")
    if isinstance(methods, dict):
        for method in methods:
            check_name(method, f"{path.name}: methods")
