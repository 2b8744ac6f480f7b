"""Datasets of line images with their text, and the seeded choice of which samples to score.

Sources (`data.source` in a playbook):
- a folder with `labels.jsonl`: one `{"image": "a.png", "text": "..."}` per line (image paths
  relative to the folder);
- a folder written by `datasets.save_to_disk` (a Dataset, or a DatasetDict with `split`);
- a dataset name on the Hugging Face Hub (only when the host is online).

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

from .spec import DataSpec


class Samples:
    """Random access to (image, text) pairs of one source."""

    def __init__(self, spec: DataSpec, root: str | None = None) -> None:
        self.spec = spec
        path = os.path.expanduser(spec.source)
        if root and not os.path.isabs(path):
            path = os.path.join(root, path)
        self.path = path
        self._rows: list[dict] | None = None
        self._widths: dict[int, int] = {}
        self._dataset = None
        if os.path.isfile(os.path.join(path, "labels.jsonl")):
            self._rows = _read_labels(Path(path))
        elif os.path.isdir(path):
            import datasets

            loaded = datasets.load_from_disk(path)
            self._dataset = (
                loaded[spec.split] if isinstance(loaded, datasets.DatasetDict) else loaded
            )
        elif spec.source.startswith(("/", ".", "~")):
            raise FileNotFoundError(f"data.source: {spec.source}: no such folder")
        else:
            import datasets

            self._dataset = datasets.load_dataset(spec.source, split=spec.split)
        if self._dataset is not None:
            for col in (spec.image_column, spec.text_column):
                if col not in self._dataset.column_names:
                    raise ValueError(
                        f"data: column '{col}' not in {spec.source} "
                        f"(columns: {', '.join(self._dataset.column_names)})"
                    )

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else len(self._dataset)

    def text(self, index: int) -> str:
        """The reference text of sample `index`."""
        if self._rows is not None:
            return self._rows[index]["text"]
        return self._dataset[index][self.spec.text_column]

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


def holdout_split(n_rows: int, holdout: dict) -> tuple[list[int], list[int]]:
    """(train indices, test indices) of `n_rows` rows for `data.holdout: {test_size, seed}`:
    exactly the rows `datasets.Dataset.train_test_split(test_size, seed=seed)` puts in each part
    (computed by datasets itself, on an in-memory column of row numbers)."""
    import datasets

    rows = datasets.Dataset.from_dict({"row": list(range(n_rows))})
    parts = rows.train_test_split(test_size=holdout["test_size"], seed=holdout["seed"])
    return list(parts["train"]["row"]), list(parts["test"]["row"])
