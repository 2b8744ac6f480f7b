"""A host whose tree takes longer to hash than the host's `timeout` (found by the chaos soak,
benchmarks/soak.py): the push's listing is real work, not a dead link, and must not be reported
as `no answer within Ns`. Against the loopback sshd; the slow part is a sparse file in the host's
tree, sized so that sha256sum needs more than 1.5 s for it; it costs no disk."""

from __future__ import annotations

import subprocess
import time


def test_hashing_longer_than_the_timeout_is_not_unreachable(project, gpu, orch, tmp_path):
    cfg = project / "orch.yaml"
    assert orch("push", "--host", gpu).exit_code == 0
    big = tmp_path / "remote" / "code" / "gpu_worker" / "sparse.bin"
    hashing, size = 0.0, 32 << 20
    while hashing < 1.5 and size < 64 << 30:  # grow it until hashing outlasts the timeout
        size *= 2
        with open(big, "wb") as f:
            f.truncate(size)
        t0 = time.monotonic()
        subprocess.run(["sha256sum", str(big)], capture_output=True, check=True)
        hashing = time.monotonic() - t0
    cfg.write_text(cfg.read_text().replace("timeout: 5", "timeout: 1"))
    res = orch("push", "--host", gpu)
    print(f"hashing the host's tree took {hashing:.1f}s; push exit {res.exit_code}")
    assert hashing > 1.5  # longer than the host's timeout, or the test proves nothing
    assert res.exit_code == 0 and "deleted 1" in res.stdout, res.output
    assert not big.exists()
