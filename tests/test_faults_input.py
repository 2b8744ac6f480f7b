"""Bad files and settings around runs (issue 17): a failed shard never merged as succeeded, a
host removed from orch.yaml, hostile JSON from a host, a bad local run record, an absurd
`timeout:`. Real sshd, tmux and the real worker where the defect needs them."""

from __future__ import annotations

from tests.test_shards import SHARDTEST, sshd2, two_hosts, wait_all  # noqa: F401


def test_failed_shard_is_never_merged_as_succeeded(two_hosts, orch):  # noqa: F811
    # the real worker on both shards; shard 1's command then exits 1 (its results.json exists)
    command = (
        'command: "{python} -m gpu_worker run {playbook} --out {out} && '
        "! grep -q 'shard: 1' {playbook}\"\n"
    )
    book = (two_hosts / "playbooks" / "shardtest.yaml").read_text()
    (two_hosts / "playbooks" / "failshard.yaml").write_text(book + command)
    res = orch("run", "failshard", "--host", "gpu1,gpu2")
    assert res.exit_code == 0, res.output
    parent = res.stdout.split("started ")[1].split(":")[0]
    states = {s["run_id"]: (s["state"], s["exit_code"]) for s in wait_all(orch, [parent])}
    assert states == {f"{parent}-s0": ("succeeded", 0), f"{parent}-s1": ("failed", 1)}
    res = orch("fetch", parent)
    assert res.exit_code == 1, res.output
    assert "merged (succeeded)" not in res.output
    assert (
        f"{parent}: not merged: shard(s) did not succeed: {parent}-s1 (exit code 1)" in res.output
    )
    assert not (two_hosts / "results" / parent).exists()
    assert (two_hosts / "results" / f"{parent}-s1" / "results.json").is_file()  # fetched, kept
