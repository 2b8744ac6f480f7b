"""`orch publish --adapter RUN:checkpoint-N`: the fetched adapter and its card, in one commit, to
the local stand-in Hub; bad names and unfetched adapters are one clear line."""

import json

import yaml
from safetensors.torch import save_file

from tests.test_publish import write_results
from tests.test_publish_hub import TOKEN, orch_sub

# their fixtures: pub (a project), hub_server and hub (the stand-in Hub)
pytest_plugins = ["tests.test_publish", "tests.test_publish_hub"]

TRAIN = "train-20261127-101500-cd34"


def fetched_adapter(root):
    import torch

    folder = root / "results" / TRAIN / "outputs" / "checkpoints" / "checkpoint-300"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": "Qwen/Qwen2.5-VL-3B-Instruct"})
    )
    save_file({"a.lora_A.weight": torch.ones(2, 3)}, str(folder / "adapter_model.safetensors"))
    (folder / "optimizer.pt").write_bytes(b"not uploaded")
    return folder


def test_adapter_and_its_evaluation_go_to_the_hub(pub, hub):
    folder = fetched_adapter(pub)
    ev = write_results(pub, "eval-20261127-120000-ef56", {"greedy": 0.21}, playbook="eval")
    doc = json.loads((ev / "results.json").read_text())
    ckpt = f"/r/runs/{TRAIN}/checkpoints/checkpoint-300"
    doc["run"]["model"] = {"base": "Qwen/Qwen2.5-VL-3B-Instruct", "checkpoints": [ckpt]}
    (ev / "results.json").write_text(json.dumps(doc))
    res = orch_sub(pub, "publish", "--adapter", f"{TRAIN}:checkpoint-300")
    assert res.returncode == 0, res.stderr
    assert "adapter published: " in res.stdout and TOKEN not in res.stdout + res.stderr
    files = hub.repos["me/odia-ocr"].commits[-1]["files"]
    assert sorted(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert files["adapter_model.safetensors"] == (folder / "adapter_model.safetensors").read_bytes()
    _, front, body = files["README.md"].decode().split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["base_model"] == "Qwen/Qwen2.5-VL-3B-Instruct" and meta["library_name"] == "peft"
    values = [m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]]
    assert 0.21 in values
    assert f"checkpoint-300 of training run {TRAIN}" in body and "eval-20261127" in body


def test_bad_or_unfetched_adapters_are_one_line(pub, hub):
    res = orch_sub(pub, "publish", "--adapter", "nocolon")
    assert res.returncode == 2 or res.returncode == 1
    assert "expected RUN:checkpoint-N" in res.stderr and "Traceback" not in res.stderr
    res = orch_sub(pub, "publish", "--adapter", f"{TRAIN}:checkpoint-9")
    assert "fetch the training run first" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    fetched_adapter(pub)
    res = orch_sub(pub, "publish", "--adapter", f"{TRAIN}:checkpoint-300", token=None)
    assert res.returncode != 0 and "no Hugging Face token" in res.stderr
    assert not hub.repos["me/odia-ocr"].commits
