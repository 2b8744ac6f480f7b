"""Benchmark `orch push` against `rsync -az` over the same local sshd, in one run.

Cases: first push of a 200-file tree, a no-op push, a push with one file changed. Each side pays
its own connection set-up on every push (a new SSH connection per push, as a user would see).
`orch` is timed in-process (the push itself) and, for the no-op, also as a CLI subprocess, which
adds Python start-up. Bytes: payload the client sent (orch: the tar stream; rsync: its "Total
bytes sent"). Usage: python benchmarks/push.py [--json] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator import sync  # noqa: E402
from orchestrator.config import load_config  # noqa: E402
from orchestrator.transport import open_host  # noqa: E402
from tests.sshd_server import SSHServer  # noqa: E402


def make_tree(project: Path, n: int = 200) -> None:
    """A git project with n small source files under gpu_worker/."""
    for i in range(n):
        sub = project / "gpu_worker" / f"pkg{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"mod{i}.py").write_text(f"# module {i}\n" + "x = 1\n" * (50 + i % 200))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "tree"],
        cwd=project,
        check=True,
    )


def orch_push(project: Path) -> tuple[float, int]:
    cfg = load_config(project / "orch.yaml")
    start = time.perf_counter()
    with open_host(cfg.host("bench")) as host:
        res = sync.push(cfg, host)
    return time.perf_counter() - start, res.bytes_sent


def orch_cli_push(project: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "push", "--host", "bench"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def rsync_push(project: Path, ssh_cmd: str, dest: str) -> tuple[float, int]:
    start = time.perf_counter()
    out = subprocess.run(
        [
            "rsync",
            "-az",
            "--delete",
            "--stats",
            "-e",
            ssh_cmd,
            f"{project}/gpu_worker/",
            f"bench:{dest}/",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    elapsed = time.perf_counter() - start
    sent = int(re.search(r"Total bytes sent: ([\d,]+)", out).group(1).replace(",", ""))
    return elapsed, sent


def median_of(fn, repeat: int, before=lambda: None) -> tuple[float, int]:
    times, nbytes = [], 0
    for _ in range(repeat):
        before()
        t, nbytes = fn()
        times.append(t)
    return statistics.median(times), nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-push-"))
    os.environ["HOME"] = str(tmp / "home")
    with SSHServer(tmp / "sshd") as srv:
        srv.install_client(tmp / "home", "bench")
        ssh_cmd = f"ssh -F {tmp}/home/.ssh/config -o UserKnownHostsFile={tmp}/home/.ssh/known_hosts"
        project, remote, rsync_dest = tmp / "proj", tmp / "remote", tmp / "rsync-dest"
        project.mkdir()
        make_tree(project)
        (project / "orch.yaml").write_text(
            f"hosts:\n  bench:\n    host: bench\n    remote_dir: {remote}\n"
        )

        def clean() -> None:
            shutil.rmtree(remote, ignore_errors=True)
            shutil.rmtree(rsync_dest, ignore_errors=True)

        first = median_of(lambda: orch_push(project), max(3, args.repeat // 2), clean)
        rfirst = median_of(
            lambda: rsync_push(project, ssh_cmd, str(rsync_dest)), max(3, args.repeat // 2), clean
        )
        orch_push(project)
        rsync_push(project, ssh_cmd, str(rsync_dest))
        noop = median_of(lambda: orch_push(project), args.repeat)
        rnoop = median_of(lambda: rsync_push(project, ssh_cmd, str(rsync_dest)), args.repeat)
        cli_noop = statistics.median(orch_cli_push(project) for _ in range(3))

        target = project / "gpu_worker" / "pkg3" / "mod3.py"
        counter = iter(range(10**6))

        def touch() -> None:
            target.write_text(f"# changed {next(counter)}\n" + "y = 2\n" * 60)

        one = median_of(lambda: orch_push(project), args.repeat, touch)
        rone = median_of(lambda: rsync_push(project, ssh_cmd, str(rsync_dest)), args.repeat, touch)
    shutil.rmtree(tmp, ignore_errors=True)

    fig = {
        "files": 200,
        "first_orch_s": first[0],
        "first_rsync_s": rfirst[0],
        "noop_orch_s": noop[0],
        "noop_rsync_s": rnoop[0],
        "noop_orch_cli_s": cli_noop,
        "one_file_orch_s": one[0],
        "one_file_rsync_s": rone[0],
        "first_orch_bytes": first[1],
        "first_rsync_bytes": rfirst[1],
        "noop_orch_bytes": noop[1],
        "noop_rsync_bytes": rnoop[1],
        "one_file_orch_bytes": one[1],
        "one_file_rsync_bytes": rone[1],
    }
    fig["first_ratio"] = first[0] / rfirst[0]
    fig["noop_ratio"] = noop[0] / rnoop[0]
    fig["noop_cli_ratio"] = cli_noop / rnoop[0]
    fig["one_file_ratio"] = one[0] / rone[0]
    fig["bytes_ratio"] = (first[1] + noop[1] + one[1]) / (rfirst[1] + rnoop[1] + rone[1])
    if args.json:
        print(json.dumps(fig, indent=2))
        return
    print(
        f"{'case (200 files)':<22}{'orch push':>12}{'rsync -az':>12}{'ratio':>8}"
        f"{'orch bytes':>12}{'rsync bytes':>13}"
    )
    for label, key in (
        ("first push", "first"),
        ("no-op push", "noop"),
        ("one file changed", "one_file"),
    ):
        orch_ms, rsync_ms = fig[key + "_orch_s"] * 1000, fig[key + "_rsync_s"] * 1000
        print(
            f"{label:<22}{orch_ms:>10.0f}ms{rsync_ms:>10.0f}ms{fig[key + '_ratio']:>8.2f}"
            f"{fig[key + '_orch_bytes']:>12}{fig[key + '_rsync_bytes']:>13}"
        )
    print(
        f"{'no-op, orch CLI process':<22}{cli_noop * 1000:>10.0f}ms{rnoop[0] * 1000:>10.0f}ms"
        f"{fig['noop_cli_ratio']:>8.2f}"
    )
    print(f"bytes ratio (all cases, orch/rsync): {fig['bytes_ratio']:.2f}")


if __name__ == "__main__":
    main()
