"""Datasets of line images with their text, and the seeded choice of which samples to score.

Sources (`data.source` in a playbook):
- a folder with `labels.jsonl`: one `{"image": "a.png", "text": "..."}` per line (image paths
  relative to the folder);
- a folder written by `datasets.save_to_disk` (a Dataset, or a DatasetDict with `split`);
- a dataset name on the Hugging Face Hub; offline (`HF_HUB_OFFLINE` or `HF_DATASETS_OFFLINE`)
  it is read from the local cache: the `datasets` cache first, then the hub's snapshot of the
  repository (`hub/datasets--OWNER--NAME/snapshots/<refs/main>/...parquet`).
A path-like source (`is_path_like`) that does not exist is "no such folder", never a Hub name.
A split the source lacks is one `DataError` listing the splits it has.

`holdout_split(n_rows, holdout)` gives exactly the (train, test) row indices of
`datasets.Dataset.train_test_split(test_size=..., seed=...)`; `data.holdout` scores the test
rows, and `data.n_samples` then samples among them (`selected_indices`).

`sample_indices(total, n_samples, seed)` picks the same indices every time for the same inputs;
`selection_hash` names that choice (source, split, indices) so results can be compared honestly.
Images are decoded only when asked for: a corrupt image fails that sample, not the run.
`by_width` orders indices by image width (header only) so batches pad little; `prefetched`
loads each next batch (and runs a `prepare` step such as the processor) on a background thread
while the current one decodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .contract.spec import DataSpec, PlaybookError

COMMON_FOLDERS = ("data", "datasets", "dataset")  # `data/x` is a folder, never a Hub name


class DataError(PlaybookError):
    """The data a playbook names is missing or unusable; the message names the field."""


def resolve_path(source: str, root: str | None) -> str:
    """`source` as a path on this host (`~` expanded, relative to `root`)."""
    path = os.path.expanduser(source)
    return os.path.join(root, path) if root and not os.path.isabs(path) else path


def is_path_like(source: str, root: str | None = None) -> bool:
    """Whether `source` names a folder rather than a Hub dataset (`OWNER/NAME` or `NAME`):
    it starts with `/`, `.` or `~`, ends with `/`, has more than one `/`, starts with a
    `COMMON_FOLDERS` name, or its first part is a folder under `root`."""
    if source.startswith(("/", ".", "~")) or source.endswith("/") or source.count("/") > 1:
        return True
    head = source.split("/", 1)[0]
    return "/" in source and (
        head in COMMON_FOLDERS or os.path.isdir(os.path.join(root or os.getcwd(), head))
    )


class Samples:
    """Random access to (image, text) pairs of one source."""

    def __init__(self, spec: DataSpec, root: str | None = None) -> None:
        self.spec = spec
        self.path = path = resolve_path(spec.source, root)
        self._rows: list[dict] | None = None
        self._widths: dict[int, int] = {}
        self._columns: dict[str, object] = {}
        self._dataset = None
        if os.path.isfile(os.path.join(path, "labels.jsonl")):
            self._rows = _read_labels(Path(path))
        elif os.path.isdir(path):
            import datasets

            loaded = datasets.load_from_disk(path)
            self._dataset = _pick_split(loaded, spec)
        elif is_path_like(spec.source, root):
            raise DataError(f"data.source: {spec.source}: no such folder on this host")
        else:
            self._dataset = _load_hub(spec)
        if self._dataset is not None:
            for col in (spec.image_column, spec.text_column):
                if col not in self._dataset.column_names:
                    raise DataError(
                        f"data: column '{col}' not in {spec.source} "
                        f"(columns: {', '.join(self._dataset.column_names)})"
                    )

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else len(self._dataset)

    @property
    def revision(self) -> str | None:
        """What names this version of the data: a 16-hex hash of `labels.jsonl`, or the
        `datasets` fingerprint of a saved or Hub dataset (None when it has none)."""
        if self._rows is not None:
            raw = Path(self.path, "labels.jsonl").read_bytes()
            return hashlib.sha256(raw).hexdigest()[:16]
        return getattr(self._dataset, "_fingerprint", None)

    def text(self, index: int) -> str:
        """The reference text of sample `index`."""
        if self._rows is not None:
            return self._rows[index]["text"]
        return self._dataset[index][self.spec.text_column]

    def columns(self) -> list[str]:
        """The column names (of a labels.jsonl folder: the keys of its first row)."""
        if self._rows is not None:
            return list(self._rows[0]) if self._rows else []
        return list(self._dataset.column_names)

    def value(self, index: int, column: str) -> str | None:
        """Column `column` of sample `index` as text (None when missing), e.g. its group. A
        dataset's column is read once, alone (a row would decode its image too)."""
        if self._rows is not None:
            value = self._rows[index].get(column)
        else:
            if column not in self._columns:
                self._columns[column] = self._dataset.select_columns([column])[column]
            value = self._columns[column][index]
        return None if value is None else str(value)

    def describe(self, index: int) -> str:
        """`index` with the image's file name or id when the source has one, for log lines."""
        if self._rows is not None:
            return f"{index} ({self._rows[index]['image']})"
        if "id" in self._dataset.column_names:
            return f"{index} (id {self.value(index, 'id')})"
        return str(index)

    def image(self, index: int):
        """Sample `index` as an RGB PIL image; raises on a missing or corrupt file."""
        from PIL import Image

        if self._rows is not None:
            with Image.open(os.path.join(self.path, self._rows[index]["image"])) as img:
                return img.convert("RGB")
        value = self._dataset[index][self.spec.image_column]
        if isinstance(value, dict) and value.get("bytes") is not None:
            import io

            value = Image.open(io.BytesIO(value["bytes"]))
        elif isinstance(value, (str, dict)):
            value = Image.open(value["path"] if isinstance(value, dict) else value)
        return value.convert("RGB")

    def widths(self, indices: list[int]) -> dict[int, int]:
        """`width` of each index, read once per Samples (every method sorts the same images)."""
        for i in indices:
            if i not in self._widths:
                self._widths[i] = self.width(i)
        return {i: self._widths[i] for i in indices}

    def width(self, index: int) -> int:
        """The width of image `index` from its header (0 when it cannot be read)."""
        from PIL import Image

        try:
            if self._rows is not None:
                with Image.open(os.path.join(self.path, self._rows[index]["image"])) as img:
                    return img.width
            value = self._dataset[index][self.spec.image_column]
            if isinstance(value, dict) and value.get("bytes") is not None:
                import io

                value = Image.open(io.BytesIO(value["bytes"]))
            elif isinstance(value, (str, dict)):
                value = Image.open(value["path"] if isinstance(value, dict) else value)
            return value.width  # PIL reads the header only until pixels are needed
        except Exception:  # noqa: BLE001 - an unreadable image fails later, when it is decoded
            return 0


@dataclass
class Loaded:
    """One batch as read: the indices that loaded, their images, and (index, error) failures."""

    indices: list[int]
    images: list
    failures: list[tuple[int, BaseException]] = field(default_factory=list)


def load_batch(samples: Samples, batch: list[int]) -> Loaded:
    """Decode the images of `batch`; an unreadable one becomes a failure, not an exception."""
    out = Loaded([], [])
    for index in batch:
        try:
            out.images.append(samples.image(index))
            out.indices.append(index)
        except Exception as exc:  # noqa: BLE001 - any unreadable image is one failure, recorded
            out.failures.append((index, exc))
    return out


def by_width(samples: Samples, indices: list[int]) -> list[int]:
    """`indices` ordered by image width (stable), so a batch holds images of similar size."""
    widths = samples.widths(indices)
    return sorted(indices, key=lambda i: widths[i])


def prefetched(
    samples: Samples,
    batches: list[list[int]],
    prepare: Callable[[list], None] | None = None,
) -> Iterator[Loaded]:
    """Yield each batch loaded; the next one is read (and `prepare`d) on a background thread."""
    if not batches:
        return

    def job(batch: list[int]) -> Loaded:
        loaded = load_batch(samples, batch)
        if prepare is not None and loaded.images:
            try:
                prepare(loaded.images)
            except Exception:  # noqa: BLE001 - the decode step redoes it and reports the error
                pass
        return loaded

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(job, batches[0])
        for nxt in [*batches[1:], None]:
            loaded = pending.result()
            if nxt is not None:
                pending = pool.submit(job, nxt)
            yield loaded


def _read_labels(folder: Path) -> list[dict]:
    rows = []
    with open(folder / "labels.jsonl", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{folder}/labels.jsonl:{number}: invalid JSON ({exc})") from None
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("image"), str)
                or not isinstance(row.get("text"), str)
            ):
                raise ValueError(
                    f'{folder}/labels.jsonl:{number}: expected {{"image": ..., "text": ...}}'
                )
            rows.append(row)
    return rows


def sample_indices(total: int, n_samples: int | None, seed: int) -> list[int]:
    """`n_samples` distinct indices out of `total`, the same for the same seed, in order."""
    if not n_samples or n_samples >= total:
        return list(range(total))
    return sorted(random.Random(seed).sample(range(total), n_samples))


def shard_indices(indices: list[int], shard: int, num_shards: int) -> list[int]:
    """Contiguous part `shard` (0-based) of `num_shards` of `indices`; sizes differ by at most 1.

    The shards of one selection, concatenated in order, are exactly that selection.
    """
    start, end = len(indices) * shard // num_shards, len(indices) * (shard + 1) // num_shards
    return indices[start:end]


def selection_hash(spec: DataSpec, indices: list[int]) -> str:
    """A short sha256 naming the source, split and exact indices scored."""
    doc = json.dumps([spec.source, spec.split, indices], separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _pick_split(loaded, spec: DataSpec):
    """The split `spec.split` of a DatasetDict (a Dataset is its own only split)."""
    import datasets

    if not isinstance(loaded, (datasets.DatasetDict, dict)):
        return loaded
    if spec.split not in loaded:
        raise _no_split(spec, list(loaded))
    return loaded[spec.split]


def _no_split(spec: DataSpec, names: list[str]) -> DataError:
    return DataError(
        f"data.split: '{spec.split}' not in {spec.source} (splits: {', '.join(names)}); "
        "set data.split, or data.holdout to hold out rows of a split"
    )


def _load_split(path: str, spec: DataSpec):
    """`datasets.load_dataset(path, split=...)`; a split it lacks is a DataError naming those
    it has (read from the library's own message: no second lookup)."""
    import ast
    import re

    import datasets

    try:
        return datasets.load_dataset(path, split=spec.split)
    except ValueError as exc:
        found = re.search(r"Unknown split .*Should be one of (\[.*\])", str(exc))
        if not found:
            raise
        raise _no_split(spec, [str(n) for n in ast.literal_eval(found.group(1))]) from None


def offline() -> bool:
    """Whether the Hugging Face libraries are told to stay offline."""
    values = (os.environ.get(k, "").upper() for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(v in ("1", "ON", "YES", "TRUE") for v in values)


def hub_snapshot(name: str) -> str | None:
    """The local snapshot folder of Hub dataset `name` (refs/main), or None."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, repo_type="dataset", local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the cache, in whatever way the library says it
        return None


def _load_hub(spec: DataSpec):
    """A Hub dataset's split: online through `datasets`; offline from the local caches."""
    if not offline():
        return _load_split(spec.source, spec)
    try:
        return _load_split(spec.source, spec)
    except DataError:
        raise
    except Exception:  # noqa: BLE001 - not in the datasets cache: try the hub's snapshot
        pass
    folder = hub_snapshot(spec.source)
    if folder is None:
        raise DataError(
            f"data.source: {spec.source}: not in the local Hugging Face cache and the host is "
            "offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE); download it first, or use a folder"
        )
    return _load_split(folder, spec)


def holdout_split(n_rows: int, holdout: dict) -> tuple[list[int], list[int]]:
    """(train, test) row indices exactly as `Dataset.train_test_split(test_size, seed=seed)`
    (shuffled) gives them: numpy's `default_rng(seed).permutation(n_rows)`, the first
    ceil(test_size * n_rows) (or test_size rows) for the test part, the rest for train."""
    import math

    import numpy as np

    size = holdout["test_size"]
    n_test = math.ceil(size * n_rows) if isinstance(size, float) else int(size)
    if not 0 < n_test < n_rows:
        raise DataError(
            f"data.holdout.test_size: {size} of {n_rows} row(s) leaves no test or no train rows"
        )
    permutation = np.random.default_rng(holdout["seed"]).permutation(n_rows).tolist()
    return permutation[n_test:], permutation[:n_test]


def selected_indices(n_rows: int, spec: DataSpec) -> list[int]:
    """The rows a run scores: the holdout's test rows (if set) in their split order, then
    `n_samples` of them (seeded; `sample_indices`), then this shard's part."""
    pool = holdout_split(n_rows, spec.holdout)[1] if spec.holdout else list(range(n_rows))
    chosen = [pool[p] for p in sample_indices(len(pool), spec.n_samples, spec.seed)]
    return shard_indices(chosen, spec.shard, spec.num_shards)
