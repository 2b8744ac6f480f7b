"""`orch doctor`: one round trip that checks whether a host can run the worker.

Each `Check` has a `CheckStatus`: ok, warn (worth knowing, not blocking), fail or skip. Every
path in the script is quoted by `orchestrator/shell.py`; a model path's glob characters are
matched by the host's shell against the quoted literal parts only (see `glob_words`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .config import Config, HostConfig
from .playbooks import local_model_paths as model_paths
from .shell import Quoted, path, quote, trusted
from .states import CheckStatus, worst_exit
from .transport import Host

MIN_PYTHON = (3, 10)
MIN_FREE_KIB = 1 << 20  # 1 GiB


@dataclass(frozen=True)
class Check:
    """One line of the doctor table."""

    name: str
    status: CheckStatus
    detail: str

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def glob_words(pattern: str) -> Quoted:
    """A path pattern for `ls -d`: `*`, `?` and `[...]` stay wildcards, every other character
    (spaces, quotes, `$(...)`, `;`) is quoted; a leading `~/` is the remote home."""
    home = pattern.startswith("~/")
    rest = pattern[2:] if home else pattern
    parts = re.split(r"(\*|\?|\[[^]/]*\])", rest)
    words = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            words.append(quote(part) if part else "")
        else:  # a wildcard: `*`, `?`, or a bracket class whose members are kept literal
            words.append(part if part in "*?" else _bracket(part))
    return trusted(('"$HOME"/' if home else "") + "".join(words))


def _bracket(cls: str) -> str:
    """`[abc]` with each member character escaped by a backslash (`!`/`^` first stays)."""
    inner = cls[1:-1]
    lead = inner[0] if inner[:1] in ("!", "^") else ""
    body = inner[len(lead) :]
    return "[" + lead + "".join(c if c.isalnum() or c == "-" else "\\" + c for c in body) + "]"


def check_script(host: HostConfig, paths: list[str]) -> Quoted:
    """The doctor's one script: `key=value` lines, `path<i>=<count>` for each model path."""
    r = path(host.remote_dir)
    lines = [
        f'R={r}; mkdir -p "$R" 2>/dev/null',
        'echo "tmux=$(tmux -V 2>/dev/null || echo missing)"',
        'if [ -x "$R/venv/bin/python" ]; then P="$R/venv/bin/python"; echo venv=yes; '
        f"else P={quote(host.python)}; echo venv=no; fi",
        'echo "python=$($P -c \'import sys;print("%d.%d.%d" % sys.version_info[:3])\' 2>&1'
        ' | tail -n 1)"',
        "echo \"torch=$($P -c 'import torch;print(torch.__version__, torch.cuda.is_available())'"
        ' 2>&1 | tail -n 1)"',
        'if command -v nvidia-smi >/dev/null 2>&1; then echo "gpu=$(nvidia-smi '
        '--query-gpu=name,memory.free --format=csv,noheader 2>&1 | head -n 1)"; '
        "else echo gpu=absent; fi",
        'echo "disk=$(df -Pk "$R" 2>/dev/null | awk \'NR==2{print $4}\')"',
        'if t=$(mktemp "$R/.orch-write-XXXXXX" 2>/dev/null); then rm -f "$t"; echo writable=yes; '
        "else echo writable=no; fi",
        'if command -v tesseract >/dev/null 2>&1; then echo "tesseract=$(tesseract --version 2>&1'
        ' | head -n 1)"; echo "tesseract_langs=$(tesseract --list-langs 2>/dev/null | tail -n +2'
        " | tr '\\n' ' ')\"; else echo tesseract=missing; fi",
        'cd "$R/code" 2>/dev/null || cd "$R"',
    ]
    for i, p in enumerate(paths):
        target = glob_words(p) if any(c in p for c in "*?[") else path(p)
        # a folder of `checkpoint-*` folders counts its checkpoints (as the worker expands it)
        lines.append(
            f"n=$(ls -d {target}/checkpoint-* 2>/dev/null | wc -l); "
            f'[ "$n" -gt 0 ] || n=$(ls -d {target} 2>/dev/null | wc -l); echo "path{i}=$n"'
        )
    return trusted("\n".join(lines))


def _ok(good: bool, bad: CheckStatus = CheckStatus.FAIL) -> CheckStatus:
    return CheckStatus.OK if good else bad


def run_doctor(config: Config, host: Host) -> list[Check]:
    """Run every check on `host`; the SSH login itself is the first one. Raises
    `HostUnreachable` when the host does not answer."""
    hc = host.config
    paths = model_paths(config, config.defaults.playbook) if config.defaults.playbook else []
    script = check_script(hc, paths)
    if hc.backend == "slurm":
        from .backends.slurm import doctor_script

        script = trusted(script + "\n" + doctor_script(hc.slurm))
    # a host that does not answer raises HostUnreachable: exit 3 (errors.exit_code_for), not a
    # failed check (exit 1)
    res = host.run(script, timeout=max(hc.timeout, 60.0))
    seen = dict(line.partition("=")[::2] for line in res.text.splitlines() if "=" in line)
    login = Check("ssh login", CheckStatus.OK, "local host, no SSH" if hc.is_local else hc.hostname)
    return [login, *_host_checks(hc, seen), *_model_checks(seen, paths)]


def _host_checks(hc: HostConfig, seen: dict[str, str]) -> list[Check]:
    """The checks of the host itself, from the script's `key=value` lines."""
    if hc.backend == "slurm":
        from .backends.slurm import doctor_checks

        checks = [Check(*row) for row in doctor_checks(seen, hc.slurm)]
    else:
        tmux = seen.get("tmux", "missing")
        checks = [Check("tmux", _ok(tmux != "missing"), tmux)]
    venv = seen.get("venv") == "yes"
    setup = f"missing: run `orch setup --host {hc.name}`"
    checks.append(Check("worker venv", _ok(venv), f"{hc.remote_dir}/venv" if venv else setup))
    py = seen.get("python", "")
    try:
        good = tuple(int(x) for x in py.split(".")[:2]) >= MIN_PYTHON
    except ValueError:
        good = False
    checks.append(Check("python", _ok(good), py or "not found"))
    checks += _torch_checks(hc, seen.get("torch", "").split())
    gpu = seen.get("gpu", "absent")
    checks.append(
        Check("gpu", _ok(gpu != "absent", CheckStatus.SKIP), gpu.replace("absent", "no nvidia-smi"))
    )
    disk = seen.get("disk", "")
    free = int(disk) if disk.isdigit() else -1
    room = f"{free / (1 << 20):.1f} GiB free in {hc.remote_dir}" if free >= 0 else "unknown"
    checks.append(Check("free disk", _ok(free >= MIN_FREE_KIB), room))
    writable = seen.get("writable") == "yes"
    checks.append(Check("remote_dir writable", _ok(writable), hc.remote_dir))
    checks.append(_tesseract_check(seen))
    return checks


def _torch_checks(hc: HostConfig, torch: list[str]) -> list[Check]:
    """torch imports, and CUDA: missing CUDA only warns on the local host and Slurm login nodes."""
    if len(torch) != 2 or torch[1] not in ("True", "False"):
        return [
            Check("torch import", CheckStatus.FAIL, " ".join(torch) or "no output"),
            Check("cuda", CheckStatus.SKIP, "torch not importable"),
        ]
    cuda = torch[1] == "True"
    soft = CheckStatus.WARN if hc.is_local or hc.backend == "slurm" else CheckStatus.FAIL
    detail = "available" if cuda else "not available (runs on CPU)"
    return [
        Check("torch import", CheckStatus.OK, f"torch {torch[0]}"),
        Check("cuda", _ok(cuda, soft), detail),
    ]


def _model_checks(seen: dict[str, str], paths: list[str]) -> list[Check]:
    """One check per model path (file, folder or glob): how many the host has."""
    if not paths:
        return [Check("model files", CheckStatus.SKIP, "no defaults.playbook in orch.yaml")]
    checks = []
    for i, p in enumerate(paths):
        count = seen.get(f"path{i}", "0").strip()
        ok = count.isdigit() and int(count) > 0
        checks.append(Check("model files", _ok(ok), f"{p} ({count} found)"))
    return checks


@dataclass(frozen=True)
class DoctorReport:
    """`orch doctor`'s checks of one host; exit 1 when one failed (a host that does not answer
    never gets here: `run_doctor` raises HostUnreachable, exit 3)."""

    host: str
    checks: list[Check]

    @property
    def exit_code(self) -> int:
        """1 when a check failed, else 0 (from `CheckStatus.exit_code`)."""
        return worst_exit(c.status.exit_code for c in self.checks)

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return {"host": self.host, "checks": [c.to_json() for c in self.checks]}


def _tesseract_check(seen: dict[str, str]) -> Check:
    """Tesseract and its Odia data, needed only by `kind: tesseract` methods (so: warn)."""
    version = seen.get("tesseract", "missing")
    if version == "missing":
        return Check(
            "tesseract (ori)",
            CheckStatus.WARN,
            "missing: apt-get install tesseract-ocr tesseract-ocr-ori (only for tesseract methods)",
        )
    langs = seen.get("tesseract_langs", "").split()
    if "ori" not in langs and "script/Oriya" not in langs:
        return Check(
            "tesseract (ori)",
            CheckStatus.WARN,
            f"{version}; no Odia data: apt-get install tesseract-ocr-ori",
        )
    return Check("tesseract (ori)", CheckStatus.OK, version)
