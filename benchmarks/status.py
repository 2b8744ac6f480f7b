"""Benchmark `orch status` against a plain `ssh -o BatchMode=yes host true`, in one run.

Four real sshd on loopback, each host holding two finished runs started with `orch run`. Cases:
`orch status --host h1` (one SSH round trip on a new connection, timed in-process and as a CLI
process), `ssh -o BatchMode=yes h1 true` (the floor: connect, authenticate, run nothing), and
`orch status` over all four hosts (asked in parallel). Targets: one host within 1.5x of plain ssh;
four hosts within 1.3x of one. Usage: python benchmarks/status.py [--json] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator import jobs, playbooks  # noqa: E402
from orchestrator.backends import Options  # noqa: E402
from orchestrator.config import load_config  # noqa: E402
from orchestrator.transport import open_host  # noqa: E402
from tests.sshd_server import SSHServer  # noqa: E402

HOSTS = ("h1", "h2", "h3", "h4")


def median_time(fn, repeat: int) -> float:
    """Median wall time of `fn()` over `repeat` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_project(project: Path, tmp: Path) -> None:
    """A git project with one playbook whose job ends at once, and four hosts in orch.yaml."""
    (project / "gpu_worker").mkdir(parents=True)
    (project / "gpu_worker" / "__init__.py").write_text("")
    (project / "playbooks").mkdir()
    (project / "playbooks" / "noop.yaml").write_text('command: "echo done"\n')
    hosts = "".join(
        f"  {h}: {{host: {h}, remote_dir: {tmp / ('remote-' + h)}, python: {sys.executable}}}\n"
        for h in HOSTS
    )
    (project / "orch.yaml").write_text("hosts:\n" + hosts)
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "p"],
    ):
        subprocess.run(["git", *args], cwd=project, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-status-"))
    home = tmp / "home"
    os.environ["HOME"] = str(home)
    with ExitStack() as stack:
        for h in HOSTS:
            srv = stack.enter_context(SSHServer(tmp / f"sshd-{h}"))
            srv.install_client(home, h)
        project = tmp / "proj"
        make_project(project, tmp)
        os.chdir(project)
        cfg = load_config(project / "orch.yaml")
        book = playbooks.resolve(cfg, "noop")
        for h in HOSTS:
            for _ in range(2):
                with open_host(cfg.host(h)) as host:
                    jobs.launch_one(cfg, host, book, Options(allow_concurrent=True))
        ssh = ["ssh", "-F", str(home / ".ssh" / "config"), "-o", "BatchMode=yes"]
        ssh += ["-o", f"UserKnownHostsFile={home / '.ssh' / 'known_hosts'}", "h1", "true"]
        orch_cli = [sys.executable, "-m", "orchestrator", "status", "--host", "h1"]
        fig = {
            "ssh_true_s": median_time(lambda: subprocess.run(ssh, check=True), args.repeat),
            "one_host_s": median_time(
                lambda: jobs.collect_status(cfg, host_name="h1"), args.repeat
            ),
            "four_hosts_s": median_time(lambda: jobs.collect_status(cfg), args.repeat),
            "one_host_cli_s": median_time(
                lambda: subprocess.run(orch_cli, check=True, capture_output=True), 5
            ),
        }
        runs = jobs.collect_status(cfg)
        assert len(runs) == 2 * len(HOSTS), runs
    shutil.rmtree(tmp, ignore_errors=True)
    fig["runs_seen_four_hosts"] = len(runs)
    fig["one_host_ratio"] = fig["one_host_s"] / fig["ssh_true_s"]
    fig["four_vs_one_ratio"] = fig["four_hosts_s"] / fig["one_host_s"]
    fig["one_host_cli_ratio"] = fig["one_host_cli_s"] / fig["ssh_true_s"]
    if args.json:
        print(json.dumps(fig, indent=2))
        return
    print(f"{'case (median of ' + str(args.repeat) + ')':<36}{'wall':>10}{'ratio':>8}")
    print(f"{'ssh -o BatchMode=yes h1 true':<36}{fig['ssh_true_s'] * 1000:>8.0f}ms")
    print(
        f"{'orch status --host h1 (in-process)':<36}{fig['one_host_s'] * 1000:>8.0f}ms"
        f"{fig['one_host_ratio']:>8.2f}  (vs ssh true; target <= 1.5)"
    )
    print(
        f"{'orch status, 4 hosts':<36}{fig['four_hosts_s'] * 1000:>8.0f}ms"
        f"{fig['four_vs_one_ratio']:>8.2f}  (vs 1 host; target <= 1.3)"
    )
    print(
        f"{'orch status --host h1 (CLI process)':<36}{fig['one_host_cli_s'] * 1000:>8.0f}ms"
        f"{fig['one_host_cli_ratio']:>8.2f}  (vs ssh true; adds Python start-up)"
    )


if __name__ == "__main__":
    main()
