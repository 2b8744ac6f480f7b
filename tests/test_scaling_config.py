"""orch.yaml for scaling out: `backend: slurm` with its resources, host groups, `--host a,b`;
the worker's shard settings and the contiguous split."""

import pytest

from gpu_worker.contract.spec import PlaybookError, parse_playbook
from gpu_worker.data import shard_indices
from orchestrator.config import SlurmConfig, load_config
from orchestrator.errors import ConfigError


def config(tmp_path, text):
    (tmp_path / "orch.yaml").write_text(text)
    return load_config(tmp_path / "orch.yaml")


def test_slurm_host_groups_and_host_lists(tmp_path):
    cfg = config(
        tmp_path,
        "hosts:\n  gpu1: {host: a}\n  gpu2: {host: b}\n"
        "  hpc: {host: login.example.org, backend: slurm,"
        " slurm: {partition: gpu, gres: 'gpu:a100:1', time: '02:00:00', cpus_per_task: 8}}\n"
        "groups:\n  pair: [gpu1, gpu2]\n",
    )
    assert cfg.host("gpu1").backend == "tmux" and cfg.host("gpu1").slurm == SlurmConfig()
    hpc = cfg.host("hpc")
    assert hpc.backend == "slurm"
    assert hpc.slurm == SlurmConfig(
        partition="gpu", gres="gpu:a100:1", time="02:00:00", cpus_per_task=8
    )
    assert [h.name for h in cfg.host_list("pair")] == ["gpu1", "gpu2"]
    assert [h.name for h in cfg.host_list("gpu2, gpu1")] == ["gpu2", "gpu1"]
    assert [h.name for h in cfg.host_list("hpc")] == ["hpc"]
    with pytest.raises(ConfigError, match="a host is named twice"):
        cfg.host_list("gpu1,gpu1")
    with pytest.raises(ConfigError, match="unknown host 'gpu3'"):
        cfg.host_list("gpu1,gpu3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "hosts:\n  h: {host: a, backend: slurmm}\n",
            "hosts.h.backend: expected one of tmux, slurm (did you mean 'slurm'?)",
        ),
        (
            "hosts:\n  h: {host: a, slurm: {partion: gpu}}\n",
            "hosts.h.slurm.partion: unknown key (did you mean 'partition'?)",
        ),
        (
            "hosts:\n  h: {host: a, slurm: {cpus_per_task: 0}}\n",
            "hosts.h.slurm.cpus_per_task: expected a positive integer",
        ),
        ("groups:\n  pair: gpu1\n", "groups.pair: expected a list of strings"),
    ],
)
def test_bad_scaling_settings_name_file_and_field(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        config(tmp_path, text)
    assert str(err.value).startswith(f"orch.yaml: {message}")


def test_contiguous_shards_cover_the_selection_once_in_order():
    indices = [3, 5, 8, 13, 21, 34, 55]
    parts = [shard_indices(indices, i, 3) for i in range(3)]
    assert parts == [[3, 5], [8, 13], [21, 34, 55]]
    assert sum(parts, []) == indices
    assert [shard_indices(indices, i, 1) for i in range(1)] == [indices]
    assert [len(shard_indices(list(range(10)), i, 4)) for i in range(4)] == [2, 3, 2, 3]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"shard": 2, "num_shards": 2}, "data.shard: expected an integer from 0 to 1, got 2"),
        ({"shard": 0, "num_shards": 0}, "data.num_shards: expected a positive integer, got 0"),
        ({"shard": True, "num_shards": 2}, "data.shard: expected an integer from 0 to 1"),
    ],
)
def test_worker_validates_shard_settings(data, message):
    doc = {
        "model": {"base": "b"},
        "data": {"source": "d", **data},
        "methods": {"g": {"kind": "greedy"}},
    }
    with pytest.raises(PlaybookError, match=message):
        parse_playbook(doc)


def test_playbook_may_carry_slurm_resources_and_misspellings_are_named():
    doc = {"data": {"source": "d"}, "methods": {"g": {"kind": "greedy"}}, "model": {"base": "b"}}
    parse_playbook({**doc, "slurm": {"gres": "gpu:1", "time": "01:00:00"}})
    with pytest.raises(PlaybookError, match="slurm.gress: unknown setting .did you mean 'gres'"):
        parse_playbook({**doc, "slurm": {"gress": "gpu:1"}})
