"""`orch doctor`: one round trip that checks whether a host can run the worker.

Each `Check` has a status: ``ok``, ``warn`` (worth knowing, not blocking), ``fail`` or ``skip``.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass

from .config import Config, HostConfig
from .errors import EXIT_FAILED, EXIT_UNREACHABLE, HostUnreachable
from .playbooks import model_paths
from .transport import Host, sh_path

MIN_PYTHON = (3, 10)
MIN_FREE_KIB = 1 << 20  # 1 GiB
LOGIN = "ssh login"


@dataclass(frozen=True)
class Check:
    """One line of the doctor table."""

    name: str
    status: str
    detail: str

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def _script(host: HostConfig, paths: list[str]) -> str:
    r = sh_path(host.remote_dir)
    lines = [
        f'R={r}; mkdir -p "$R" 2>/dev/null',
        'echo "tmux=$(tmux -V 2>/dev/null || echo missing)"',
        'if [ -x "$R/venv/bin/python" ]; then P="$R/venv/bin/python"; echo venv=yes; '
        f"else P={shlex.quote(host.python)}; echo venv=no; fi",
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
        glob = p if any(c in p for c in "*?[") else None
        target = sh_path(p) if glob is None else p.replace(" ", "\\ ")
        lines.append(f'echo "path{i}=$(ls -d {target} 2>/dev/null | wc -l)"')
    return "\n".join(lines)


def run_doctor(config: Config, host: Host) -> list[Check]:
    """Run every check on `host`; the SSH login itself is the first one."""
    hc = host.config
    paths = model_paths(config, config.defaults.playbook) if config.defaults.playbook else []
    try:
        script = _script(hc, paths)
        if hc.backend == "slurm":
            from .backends.slurm import doctor_script

            script += "\n" + doctor_script(hc.slurm)
        res = host.run(script, timeout=max(hc.timeout, 60.0))
    except HostUnreachable as exc:
        return [Check(LOGIN, "fail", str(exc))]
    seen = dict(line.partition("=")[::2] for line in res.text.splitlines() if "=" in line)
    checks = [Check(LOGIN, "ok", "local host, no SSH" if hc.is_local else hc.hostname)]
    if hc.backend == "slurm":
        from .backends.slurm import doctor_checks

        checks += [Check(*row) for row in doctor_checks(seen, hc.slurm)]
    else:
        tmux = seen.get("tmux", "missing")
        checks.append(Check("tmux", "fail" if tmux == "missing" else "ok", tmux))
    venv = seen.get("venv") == "yes"
    checks.append(
        Check(
            "worker venv",
            "ok" if venv else "fail",
            f"{hc.remote_dir}/venv" if venv else f"missing: run `orch setup --host {hc.name}`",
        )
    )
    py = seen.get("python", "")
    try:
        good = tuple(int(x) for x in py.split(".")[:2]) >= MIN_PYTHON
    except ValueError:
        good = False
    checks.append(Check("python", "ok" if good else "fail", py or "not found"))
    torch = seen.get("torch", "").split()
    if len(torch) == 2 and torch[1] in ("True", "False"):
        checks.append(Check("torch import", "ok", f"torch {torch[0]}"))
        cuda = torch[1] == "True"
        checks.append(
            Check(
                "cuda",
                "ok" if cuda else ("warn" if hc.is_local or hc.backend == "slurm" else "fail"),
                "available" if cuda else "not available (runs on CPU)",
            )
        )
    else:
        checks.append(Check("torch import", "fail", " ".join(torch) or "no output"))
        checks.append(Check("cuda", "skip", "torch not importable"))
    gpu = seen.get("gpu", "absent")
    checks.append(
        Check("gpu", "skip" if gpu == "absent" else "ok", gpu.replace("absent", "no nvidia-smi"))
    )
    disk = seen.get("disk", "")
    free = int(disk) if disk.isdigit() else -1
    checks.append(
        Check(
            "free disk",
            "ok" if free >= MIN_FREE_KIB else "fail",
            f"{free / (1 << 20):.1f} GiB free in {hc.remote_dir}" if free >= 0 else "unknown",
        )
    )
    writable = seen.get("writable") == "yes"
    checks.append(Check("remote_dir writable", "ok" if writable else "fail", hc.remote_dir))
    checks.append(_tesseract_check(seen))
    if not paths:
        checks.append(Check("model files", "skip", "no defaults.playbook in orch.yaml"))
    for i, p in enumerate(paths):
        count = seen.get(f"path{i}", "0").strip()
        ok = count.isdigit() and int(count) > 0
        checks.append(Check("model files", "ok" if ok else "fail", f"{p} ({count} found)"))
    return checks


def doctor_exit_code(checks: list[Check]) -> int:
    """0 when nothing failed; 3 when the host did not answer (the login failed); 1 otherwise."""
    if any(c.name == LOGIN and c.status == "fail" for c in checks):
        return EXIT_UNREACHABLE
    return EXIT_FAILED if any(c.status == "fail" for c in checks) else 0


def _tesseract_check(seen: dict[str, str]) -> Check:
    """Tesseract and its Odia data, needed only by `kind: tesseract` methods (so: warn)."""
    version = seen.get("tesseract", "missing")
    if version == "missing":
        return Check(
            "tesseract (ori)",
            "warn",
            "missing: apt-get install tesseract-ocr tesseract-ocr-ori (only for tesseract methods)",
        )
    langs = seen.get("tesseract_langs", "").split()
    if "ori" not in langs and "script/Oriya" not in langs:
        return Check(
            "tesseract (ori)", "warn", f"{version}; no Odia data: apt-get install tesseract-ocr-ori"
        )
    return Check("tesseract (ori)", "ok", version)
