"""The worker stopped by a signal (`orch cancel` sends SIGINT, then SIGTERM): one line on
stderr naming the signal, exit 128 + N, no KeyboardInterrupt traceback in the job's log. The
worker is a real process blocked reading its input (a FIFO nobody writes)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import poll


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_worker_stops_with_one_line(tmp_path, sig):
    fifo = tmp_path / "predictions.jsonl"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_worker", "score", str(fifo)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    def reader_waiting() -> int | None:
        """The worker has the FIFO open for reading (so it is past its start-up)."""
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO and proc.poll() is None, proc.stderr.read()
            return None

    writer = poll(reader_waiting, 30, every=0.05)
    try:
        proc.send_signal(sig)
        code = proc.wait(30)
    finally:
        os.close(writer)
    err = proc.stderr.read()
    assert code == 128 + sig, err
    assert err.splitlines() == [
        f"gpu_worker: stopped by {sig.name}; what was written so far is kept "
        "(predictions and checkpoints: --resume continues from them)"
    ]
