"""A real single-node Slurm cluster for tests: munged, slurmctld and slurmd started directly.

Debian's `munge`, `slurmctld`, `slurmd` and `slurm-client` packages provide the binaries
(scripts/install.sh installs them). Everything lives in one temp folder: the munge key and socket,
slurm.conf, state, spool and logs; the daemons run in the foreground as children of this process
and are stopped by PID. The one node is this machine with its real CPUs and memory (`slurmd -C`).
Accounting is off (`accounting_storage/none`), so `sacct` has nothing: orch falls back to
`scontrol show job`, which keeps finished jobs for `MinJobAge` seconds.

A login node is an `SSHServer` whose sessions get `SLURM_CONF` (see `SlurmCluster.login_node`), so
orch reaches the cluster over SSH exactly as it would a real one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.sshd_server import SSHServer, free_port

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")
START_LIMIT_S = 180.0


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )


def node_resources() -> tuple[str, int, int]:
    """(node name, CPUs, RealMemory MiB) of this machine, as slurmd sees it."""
    out = subprocess.run(
        [_binary("slurmd") or "slurmd", "-C"], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(kv.split("=", 1) for kv in out.split()[:12] if "=" in kv)
    return fields["NodeName"], int(fields["CPUs"]), int(fields["RealMemory"])


class SlurmCluster:
    """munged + slurmctld + slurmd in `workdir`; `stop()` ends them by PID."""

    def __init__(self, workdir: Path, partition: str = "debug") -> None:
        self.dir = Path(workdir)
        self.partition = partition
        self.procs: list[subprocess.Popen] = []
        self.conf = self.dir / "slurm.conf"
        self.socket = self.dir / "munge" / "munge.socket"
        self.jobcomp = self.dir / "jobcomp.txt"

    @property
    def env(self) -> dict[str, str]:
        """The environment a Slurm client command needs to reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        node, cpus, memory = node_resources()
        self.node = node
        for sub in ("munge", "state", "spool", "log"):
            (self.dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        key = self.dir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        d = self.dir
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=orchtest",
                    f"SlurmctldHost={node}(127.0.0.1)",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.socket}",
                    f"StateSaveLocation={d / 'state'}",
                    f"SlurmdSpoolDir={d / 'spool'}",
                    f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                    f"SlurmdPidFile={d / 'slurmd.pid'}",
                    f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/filetxt",
                    f"JobCompLoc={self.jobcomp}",
                    "MinJobAge=86400",
                    "MpiDefault=none",
                    "SwitchType=switch/none",
                    "SchedulerType=sched/builtin",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "ReturnToService=2",
                    "SlurmdTimeout=300",
                    "InactiveLimit=0",
                    "KillWait=5",
                    f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} "
                    "State=UNKNOWN",
                    f"PartitionName={self.partition} Nodes={node} Default=YES MaxTime=INFINITE "
                    "State=UP",
                    "",
                ]
            )
        )

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.dir / "log" / f"{name}.out", "ab")
        self.procs.append(
            subprocess.Popen(
                [_binary(name) or name, *args], stdout=log, stderr=log, env=self.env, cwd=self.dir
            )
        )

    def start(self) -> SlurmCluster:
        """Write the config, start the three daemons and wait until the node is idle."""
        missing = [b for b in BINARIES if _binary(b) is None]
        if missing:
            raise RuntimeError(
                f"not installed: {', '.join(missing)} (Debian: munge slurmctld slurmd slurm-client)"
            )
        if os.geteuid() != 0:
            raise RuntimeError("a test Slurm cluster needs root (slurmd runs jobs as their user)")
        self._write_config()
        m = self.dir / "munge"
        self._spawn(
            "munged",
            "-F",
            "--force",
            f"--socket={self.socket}",
            f"--key-file={m / 'munge.key'}",
            f"--pid-file={m / 'munged.pid'}",
            f"--log-file={m / 'munged.log'}",
            f"--seed-file={m / 'munged.seed'}",
        )
        self._wait(lambda: self.socket.exists(), "munged socket")
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._wait(lambda: self._run("scontrol", "ping").returncode == 0, "slurmctld")
        self._spawn("slurmd", "-D", "-N", self.node, "-f", str(self.conf))
        self._wait(self._node_ready, "slurmd to register the node")
        return self

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [_binary(cmd[0]) or cmd[0], *cmd[1:]],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )

    def _node_ready(self) -> bool:
        out = self._run("sinfo", "-h", "-N", "-o", "%T").stdout.split()
        return bool(out) and all(s.rstrip("*") in ("idle", "mixed", "allocated") for s in out)

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{Path(dead[0].args[0]).name} exited: {self._logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}: {self._logs()}")

    def _logs(self) -> str:
        text = ""
        for p in sorted((self.dir / "log").glob("*")) + [self.dir / "munge" / "munged.log"]:
            if p.is_file():
                text += f"[{p.name}] " + p.read_text(errors="replace")[-400:].replace("\n", " | ")
        return text[-1500:]

    def stop(self) -> None:
        """Stop the daemons (slurmd, slurmctld, munged: reverse start order) by PID."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs = []

    def stop_controller(self) -> None:
        """Stop slurmctld by PID (jobs keep running on slurmd): "Unable to contact slurm
        controller" until `start_controller`."""
        for proc in self.procs:
            if Path(proc.args[0]).name == "slurmctld" and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        self.procs = [p for p in self.procs if p.poll() is None]

    def start_controller(self) -> None:
        """Start slurmctld again (it recovers its jobs from StateSaveLocation)."""
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._wait(lambda: self._run("scontrol", "ping").returncode == 0, "slurmctld")

    def login_node(self, workdir: Path) -> SSHServer:
        """An sshd whose sessions can run sbatch/squeue/scontrol/scancel against this cluster."""
        server = SSHServer(workdir)
        text = server.config.read_text()
        server.config.write_text(text.replace("SetEnv ", f"SetEnv SLURM_CONF={self.conf} ", 1))
        return server


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node Slurm cluster, or a skip naming why it could not start."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        cluster.stop()
        pytest.skip(f"Slurm test cluster did not start: {str(exc)[:600]}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def slurm_login(slurm_cluster, tmp_path_factory):
    """The cluster's login node: a loopback sshd with SLURM_CONF in every session."""
    with slurm_cluster.login_node(tmp_path_factory.mktemp("slurm-login")) as server:
        yield server
