"""Chaos soak: many short runs across three namespaced test hosts while faults are injected.

The job is the real worker (`python -m gpu_worker run`) with one Tesseract method on a few lines
of data/sample: real predictions, real resume from predictions.jsonl, real merge of shards, in
seconds per run (the tiny transformers model is far slower on a shared CPU). The hosts are
tests/netns.py namespaces with their own sshd and host `timeout` tests.test_faults_link.TIMEOUT;
traffic goes only to them. Every run is followed by `orch logs -f`. A seeded driver
(`--seed`) injects, at random:

- `cut`: a host's link goes down for 2-6 s (orch status must report it unreachable),
- `kill9`: a running worker is SIGKILLed (status must show it failed; then `orch run --resume`),
- `sshd`: a host's sshd is stopped for 1-3 s and started again,
- `push`: a new file in the code tree is pushed to a host while a job may run there.

Every run (some sharded over two hosts) is then fetched, and merged where sharded. Printed:
runs started, faults by kind, runs recovered (resumed and then succeeded), runs whose results or
predictions differ from an undisturbed run (must be 0), log lines lost or repeated under
`orch logs -f` (must be 0; each attempt's follower must print a prefix of the final log.txt,
the last one all of it), and the longest time a fault went unreported beyond the host's timeout.
It stops by itself: no new run or fault after `--duration` s, then at most GRACE_S to finish.

Usage (root, for the namespaces): python benchmarks/soak.py [--runs 30] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.soak_check import Report, line_diff, lines, same  # noqa: E402
from orchestrator.config import load_config  # noqa: E402
from orchestrator.jobs import collect_status, collect_status_report  # noqa: E402
from tests.helpers import orch_cmd, worker_checkout  # noqa: E402
from tests.test_faults_link import TIMEOUT  # noqa: E402

SOAK = """name: soak
data: {source: data/sample, n_samples: 10, seed: 1}
scoring: {baseline: tesseract, bootstrap: 100}
methods:
  tesseract: {kind: tesseract}
"""
HOSTS = ("a", "b", "c")
GRACE_S = 180.0
FINAL = ("succeeded", "failed", "cancelled", "lost")


@dataclass
class Job:
    """One executing run id (a single run, or one shard) and its `orch logs -f` followers."""

    job_id: str
    host: str
    state: str = "running"
    resumes: int = 0
    followers: list = field(default_factory=list)


@dataclass
class Run:
    """What the user started: a run id, or a parent id over its shards."""

    run_id: str
    jobs: list[Job]
    sharded: bool


class Soak:
    """The project, the hosts, the runs, the driver (see the module docstring)."""

    def __init__(self, workdir: Path, hosts: list, seed: int) -> None:
        self.hosts = dict(zip(HOSTS, hosts, strict=True))
        self.rng = random.Random(seed)
        self.report = Report(seed)
        self.faults: Counter = Counter()
        self.runs: list[Run] = []
        self.workdir = workdir
        home = Path(os.environ["HOME"])
        for name, host in self.hosts.items():
            host.sshd.install_client(home, f"n{name}")
        shim, cwd = types.SimpleNamespace(chdir=lambda _: None), os.getcwd()
        root = workdir / "proj"
        self.project = next(worker_checkout(root, workdir, hosts[0].sshd, shim, {"soak": SOAK}))
        assert os.getcwd() == cwd  # orch runs with cwd=project; the caller's cwd stays
        (self.project / "orch.yaml").write_text(
            "hosts:\n"
            + "".join(
                f"  {n}: {{host: n{n}, remote_dir: {workdir / ('remote-' + n)},"
                f" python: {sys.executable}, timeout: {TIMEOUT}}}\n"
                for n in HOSTS
            )
            + "push: {include: [data/sample]}\n"
        )
        self.pushes = 0
        self.config = self.project / "orch.yaml"
        self.order: list[str] = []

    # -- orch as the user runs it -------------------------------------------------------------

    def orch(self, *args: str, limit: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            orch_cmd(*args), cwd=self.project, capture_output=True, text=True, timeout=limit
        )

    def follow(self, job: Job) -> None:
        out = self.workdir / "follow" / f"{job.job_id}.{len(job.followers)}"
        out.parent.mkdir(exist_ok=True)
        with out.open("wb") as f:
            proc = subprocess.Popen(
                orch_cmd("logs", job.job_id, "-f", "-n", "1000000"),
                cwd=self.project,
                stdout=f,
                stderr=subprocess.DEVNULL,
            )
        job.followers.append((proc, out))

    def statuses(self, job_ids: list[str]) -> dict[str, dict]:
        """What `orch status --json JOB...` shows, asked in this process (faster, same code)."""
        seen = collect_status(load_config(self.config), job_ids)
        return {s.run_id: s.to_json() for s in seen}

    # -- runs ---------------------------------------------------------------------------------

    def busy(self) -> set[str]:
        return {j.host for r in self.runs for j in r.jobs if j.state not in ("succeeded",)}

    def start_run(self, limit: int) -> None:
        """Start one run (a quarter of them sharded over two hosts) on idle hosts, if any."""
        idle = [h for h in HOSTS if h not in self.busy()]
        if idle and self.report.runs_started < limit:
            sharded = len(idle) >= 2 and self.rng.random() < 0.25
            hosts = [idle.pop(self.rng.randrange(len(idle))) for _ in range(2 if sharded else 1)]
            res = self.orch("run", "soak", "--host", ",".join(hosts))
            if res.returncode != 0:
                self.report.problems.append(f"orch run on {hosts}: {res.stderr.strip()}")
                return
            run_id = res.stdout.split("started ")[1].split()[0].rstrip(":")
            jobs = (
                [Job(f"{run_id}-s{i}", h) for i, h in enumerate(hosts)]
                if sharded
                else [Job(run_id, hosts[0])]
            )
            self.runs.append(Run(run_id, jobs, sharded))
            self.report.runs_started += 1
            self.report.sharded_runs += sharded
            for job in jobs:
                self.follow(job)

    def active(self) -> list[Job]:
        return [j for r in self.runs for j in r.jobs if j.state not in ("succeeded",)]

    def refresh(self) -> None:
        jobs = self.active()
        if not jobs:
            return
        seen = self.statuses([j.job_id for j in jobs])
        for job in jobs:
            s = seen.get(job.job_id)
            if s is None or not s["reachable"]:
                continue
            job.state = s["state"]
            if job.state in ("failed", "lost"):
                self.resume(job)

    def resume(self, job: Job) -> None:
        res = self.orch("run", "--resume", job.job_id)
        if res.returncode != 0:
            self.report.problems.append(f"resume {job.job_id}: {res.stderr.strip()}")
            return
        job.state, job.resumes = "running", job.resumes + 1
        self.follow(job)

    # -- faults -------------------------------------------------------------------------------

    def detect(self, shown, t0: float, until: float, what: str) -> float:
        """Seconds from t0 until `shown()` is true, or until `until`. `shown` asks as `orch
        status` does, in this process (so the interpreter's start-up is not counted)."""
        while time.monotonic() < until:
            if shown():
                return time.monotonic() - t0
            time.sleep(0.2)
        self.report.problems.append(f"{what}: not shown by orch status")
        return until - t0

    def unreachable(self, name: str) -> bool:
        """Whether `orch status --host NAME` would say NAME is unreachable (exit 3)."""
        return name in collect_status_report(load_config(self.config), (), name).unreachable

    def note_delay(self, took: float, kind: str) -> None:
        shown = self.report.longest_until_shown_s
        shown[kind] = round(max(shown.get(kind, 0.0), took), 2)
        beyond = max(0.0, took - TIMEOUT)
        worst = self.report.longest_unreported_beyond_timeout_s
        self.report.longest_unreported_beyond_timeout_s = round(max(worst, beyond), 2)

    def cut(self) -> None:
        name = self.rng.choice(HOSTS)
        host, down = self.hosts[name], self.rng.uniform(2, 6)
        host.cut()
        t0 = time.monotonic()
        took = self.detect(lambda: self.unreachable(name), t0, t0 + 4 * TIMEOUT + down, "cut")
        self.note_delay(took, "cut")
        time.sleep(max(0.0, down - (time.monotonic() - t0)))
        host.restore()

    def sshd(self) -> None:
        name = self.rng.choice(HOSTS)
        sshd = self.hosts[name].sshd
        sshd.stop()
        t0 = time.monotonic()
        took = self.detect(lambda: self.unreachable(name), t0, t0 + 4 * TIMEOUT, "sshd stop")
        self.note_delay(took, "sshd")
        time.sleep(self.rng.uniform(1, 3))
        sshd.start()

    def kill9(self) -> bool:
        jobs = [j for j in self.active() if j.state == "running"]
        self.rng.shuffle(jobs)
        for job in jobs:
            pids = self._worker_pids(job)
            if not pids:
                continue
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            t0 = time.monotonic()

            def shown(job_id: str = job.job_id) -> bool:
                seen = collect_status(load_config(self.config), [job_id])
                return bool(seen) and seen[0].state in ("failed", "lost")

            took = self.detect(shown, t0, t0 + 30, f"kill -9 of {job.job_id}")
            self.note_delay(took, "kill9")
            return True
        return False

    def _worker_pids(self, job: Job) -> list[int]:
        host, mark = self.hosts[job.host], f"runs/{job.job_id}/"
        out = []
        for pid in host.pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "gpu_worker" in cmd and " run " in cmd and mark in cmd:
                out.append(pid)
        return out

    def push(self) -> None:
        name = self.rng.choice(HOSTS)
        self.pushes += 1
        (self.project / "soak_marker.py").write_text(f"PUSH = {self.pushes}\n")
        res = self.orch("push", "--host", name)
        if res.returncode != 0:
            self.report.problems.append(f"push to {name}: {res.stderr.strip()}")

    def inject(self) -> None:
        kinds = ["cut", "kill9", "sshd", "push"]
        if not self.order:  # each kind once per round, in a random order
            self.order = self.rng.sample(kinds, len(kinds))
        kind = self.order.pop()
        done = getattr(self, kind)()
        if done is not False:
            self.faults[kind] += 1

    # -- the soak -----------------------------------------------------------------------------

    def reference(self) -> Path:
        """An undisturbed run on host a, fetched: what every other run must equal."""
        res = self.orch("run", "soak", "--host", "a")
        run_id = res.stdout.split("started ")[1].split()[0]
        deadline = time.monotonic() + 120
        while self.statuses([run_id]).get(run_id, {}).get("state") not in FINAL:
            if time.monotonic() > deadline:
                raise RuntimeError("the undisturbed reference run did not finish in 120 s")
            time.sleep(0.5)
        self.orch("fetch", run_id)
        t0 = time.monotonic()
        self.unreachable("a")
        self.report.status_healthy_s = round(time.monotonic() - t0, 2)
        return self.project / "results" / run_id

    def drive(self, runs: int, duration: float) -> None:
        t0 = time.monotonic()
        next_fault = t0 + self.rng.uniform(1, 3)
        while time.monotonic() - t0 < duration:
            self.start_run(runs)
            self.refresh()
            if self.report.runs_started >= runs and not self.active():
                break
            if time.monotonic() >= next_fault:
                self.inject()
                next_fault = time.monotonic() + self.rng.uniform(0.5, 1.5)
            time.sleep(0.3)
        end = time.monotonic() + GRACE_S
        while self.active() and time.monotonic() < end:
            self.refresh()
            time.sleep(0.5)

    def finish(self, reference: Path) -> None:
        for run in self.runs:
            ok = all(j.state == "succeeded" for j in run.jobs)
            if not ok:
                states = {j.job_id: j.state for j in run.jobs}
                self.report.problems.append(f"{run.run_id}: did not succeed: {states}")
                continue
            res = self.orch("fetch", run.run_id)
            if res.returncode != 0:
                self.report.problems.append(f"fetch {run.run_id}: {res.stdout}{res.stderr}")
                continue
            self.report.runs_succeeded += 1
            self.report.runs_recovered += any(j.resumes for j in run.jobs)
            if not same(self.project / "results" / run.run_id, reference):
                self.report.runs_differing += 1
                self.report.problems.append(f"{run.run_id}: results differ from the reference")
            for job in run.jobs:
                self.check_logs(job)
        self.report.faults = dict(sorted(self.faults.items()))

    def check_logs(self, job: Job) -> None:
        log = (self.project / "results" / job.job_id / "log.txt").read_bytes()
        for i, (proc, out) in enumerate(job.followers):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                self.report.problems.append(f"{job.job_id}: `orch logs -f` did not end")
            got = out.read_bytes()
            want = log if i == len(job.followers) - 1 else log[: len(got)]
            lost, repeated = line_diff(want, got)
            self.report.log_lines_lost += lost
            self.report.log_lines_repeated += repeated
            if lost or repeated:
                self.report.problems.append(
                    f"{job.job_id} follower {i}: {lost} lost, {repeated} rep"
                )


def soak(workdir: Path, hosts: list, runs: int, seed: int, duration: float) -> Report:
    """Run the soak on three NetnsHosts; the report."""
    t0 = time.monotonic()
    s = Soak(workdir, hosts, seed)
    reference = s.reference()
    try:
        s.drive(runs, duration)
        s.finish(reference)
    finally:
        for run in s.runs:
            for job in run.jobs:
                for proc, _ in job.followers:
                    if proc.poll() is None:
                        proc.kill()
    s.report.wall_s = round(time.monotonic() - t0, 1)
    return s.report


def _isolate(home: Path) -> None:
    """HOME (so ~/.ssh), git identity and tmux of this process only, as tests/conftest does."""
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n  name = Soak\n  email = soak@example.com\n")
    (home / "tmux").mkdir(mode=0o700)
    os.environ.update(
        HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), TMUX_TMPDIR=str(home / "tmux")
    )
    os.environ.pop("SSH_AUTH_SOCK", None)
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--duration", type=float, default=1500.0, help="Seconds of faults, at most."
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from tests import netns

    reason = netns.unavailable_reason()
    if reason:
        print(f"soak: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="orch-soak-") as tmp:
        work = Path(tmp)
        _isolate(work / "home")
        hosts: list = []
        try:
            for i in range(3):
                hosts.append(netns.NetnsHost(work / f"ns{i}", i))
            report = soak(work, hosts, args.runs, args.seed, args.duration)
        finally:
            for host in hosts:
                host.teardown()
    print(json.dumps(asdict(report), indent=1) if args.json else "\n".join(lines(report)))
    bad = report.runs_differing or report.log_lines_lost or report.log_lines_repeated
    return 1 if bad or report.runs_succeeded < report.runs_started else 0


if __name__ == "__main__":
    sys.exit(main())
