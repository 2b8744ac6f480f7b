"""Fixed shapes for compiled static-cache decoding, and whether compiling pays off.

- `bucket(n, batch_size)`: the smallest of a few batch sizes (powers of two up to `batch_size`,
  and `batch_size` itself) holding n rows; the last, short batch is padded up to it.
- `PAD_TO`: prompt lengths are left-padded to a multiple of this, so the static cache's length
  (prompt + max_new_tokens) takes few values.
- `want_compile(setting, device, images)`: `on`/`off` as given; `auto` compiles on CUDA only, and
  only when the run decodes at least `AUTO_MIN_IMAGES` image-rows: a first compile costs 20-50 s
  and saves ~0.05 s per image against eager (3B, H100), so smaller runs stay eager.
- `compile_cache(root)`: where Inductor keeps compiled kernels, so a later run starts warm.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..contract.spec import COMPILE_SETTINGS

AUTO_MIN_IMAGES = 1000
PAD_TO = 64


def buckets(batch_size: int) -> list[int]:
    """The batch sizes decoding may use for a run with this `batch_size`."""
    sizes, size = {batch_size}, 1
    while size < batch_size:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def bucket(n: int, batch_size: int) -> int:
    """The smallest bucket that holds `n` rows (n itself when n exceeds `batch_size`)."""
    return next((b for b in buckets(batch_size) if b >= n), n)


def want_compile(setting: str, device: str, images: int) -> bool:
    """Whether to decode with static cache + torch.compile for this run."""
    if setting not in COMPILE_SETTINGS:
        raise ValueError(f"generation.compile: expected one of {', '.join(COMPILE_SETTINGS)}")
    if setting != "auto":
        return setting == "on"
    return device.startswith("cuda") and images >= AUTO_MIN_IMAGES


def compile_cache(root: str | Path) -> str:
    """Point Inductor's cache at `<remote_dir>/cache/inductor`, kept between runs on the host.

    `<remote_dir>` is two levels above `$ORCH_RUN_DIR` (`<remote_dir>/runs/<id>`, set by the job
    wrapper); the code tree itself is replaced by every push, so the cache stays out of it. Run by
    hand (no ORCH_RUN_DIR): `<root>/.orch-cache/inductor`. An explicit TORCHINDUCTOR_CACHE_DIR wins.
    """
    run_dir = os.environ.get("ORCH_RUN_DIR")
    if run_dir:
        folder = Path(run_dir).resolve().parent.parent / "cache" / "inductor"
    else:
        folder = Path(root) / ".orch-cache" / "inductor"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder))
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]
