"""What results.json names about the model and data, so publish can show it: each adapter's
name and content hash, and the data's revision."""

import json

from gpu_worker.checkpoints import adapter_identity
from gpu_worker.contract.spec import DataSpec
from gpu_worker.data import Samples


def _checkpoint(folder, weights: bytes):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(weights)
    (folder / "optimizer.pt").write_bytes(b"not part of the adapter")
    return str(folder)


def test_adapter_hash_follows_the_adapter_files_only(tmp_path):
    a = _checkpoint(tmp_path / "run1" / "checkpoint-500", b"weights-a")
    b = _checkpoint(tmp_path / "run2" / "checkpoint-500", b"weights-b")
    same = _checkpoint(tmp_path / "copy" / "checkpoint-1000", b"weights-a")
    ids = adapter_identity([a, b])
    assert [i["name"] for i in ids] == ["run1/checkpoint-500", "run2/checkpoint-500"]
    assert ids[0]["sha256"] != ids[1]["sha256"] and len(ids[0]["sha256"]) == 16
    assert adapter_identity([same])[0]["sha256"] == ids[0]["sha256"]  # content, not path
    (tmp_path / "run1" / "checkpoint-500" / "optimizer.pt").write_bytes(b"changed")
    assert adapter_identity([a]) == [{"name": "checkpoint-500", "sha256": ids[0]["sha256"]}]


def test_data_revision_follows_the_labels(tmp_path):
    (tmp_path / "labels.jsonl").write_text(json.dumps({"image": "a.png", "text": "ଓଡ଼ିଆ"}) + "\n")
    rev = Samples(DataSpec(source=str(tmp_path))).revision
    assert rev and len(rev) == 16
    (tmp_path / "labels.jsonl").write_text(json.dumps({"image": "a.png", "text": "x"}) + "\n")
    assert Samples(DataSpec(source=str(tmp_path))).revision != rev
