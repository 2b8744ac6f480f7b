"""gpu_worker: the GPU-host side of orch (inference, decoding, scoring)."""
