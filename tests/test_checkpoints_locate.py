"""`checkpoints.locate`: which base and checkpoint folders a playbook's `model` section names.
A `model.tiny` model gives the base; its own checkpoints are used only when `model.checkpoints`
names none (a run evaluating a training run's checkpoints on the tiny base must score those)."""

from gpu_worker.checkpoints import locate


def _adapter(folder):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return str(folder)


def test_tiny_uses_named_checkpoints_when_given(tmp_path):
    tiny = tmp_path / "tiny"
    (tiny / "base").mkdir(parents=True)
    _adapter(tiny / "checkpoints" / "checkpoint-50")
    trained = [_adapter(tmp_path / "run" / "checkpoints" / f"checkpoint-{n}") for n in (10, 20)]
    named = locate({"tiny": str(tiny), "checkpoints": str(tmp_path / "run" / "checkpoints")}, "/")
    assert named.base == str(tiny / "base") and named.checkpoints == trained
    own = locate({"tiny": str(tiny)}, "/")
    assert own.checkpoints == [str(tiny / "checkpoints" / "checkpoint-50")]
