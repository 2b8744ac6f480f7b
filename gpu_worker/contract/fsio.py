"""File helpers both packages use. Standard library only.

- `atomic_write`: temp name in the same folder, then a rename: a reader sees the old file or the
  new one, never half of it. Every file one side writes for the other to read goes through it.
- `atomic_dir`: the same for a folder (built under a temp name beside the destination, renamed
  into place on success, removed on any error or interrupt).
- `read_jsonl`: the one reader of `.jsonl` files (predictions): blank lines are skipped, a bad
  line is a ValueError naming the file and line; with `repair_tail` a torn last line (killed
  mid-write) is cut off instead.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .schema import loads_bounded


def atomic_write(path: Path, data: str | bytes, mode: int | None = None) -> None:
    """Write `path` atomically; `mode`: the new file's permissions."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, doc: dict) -> None:
    """`doc` as JSON at `path`, atomically."""
    atomic_write(path, json.dumps(doc, ensure_ascii=False))


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temp folder beside `dest`; on success it is renamed to `dest` (which must not
    exist), on any error it is removed: `dest` appears whole or not at all."""
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        yield tmp
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_jsonl(path: str | Path, repair_tail: bool = False) -> list[dict]:
    """The JSON objects of a .jsonl file, one per non-blank line (ValueError names the line).

    `repair_tail`: a missing file reads as empty, and an unparsable last line (a write cut
    short) is dropped from the file rather than refused."""
    path = Path(path)
    if repair_tail and not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = loads_bounded(line)
        except ValueError:  # invalid JSON, or nested too deep (schema.SchemaError)
            if repair_tail and i == len(lines) - 1:
                path.write_text("".join(lines[:i]), encoding="utf-8")
                break
            raise ValueError(f"{path}:{i + 1}: invalid JSON") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{i + 1}: expected a JSON object")
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """`rows` as a .jsonl file (one object per line), atomically."""
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
