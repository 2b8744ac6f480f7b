"""The Slurm backend's pure parts on canned output: state parsing, state mapping, sbatch options."""

from dataclasses import replace

import pytest

from orchestrator.backends.slurm import resources, sbatch_args
from orchestrator.backends.slurm_states import SlurmJob, parse_slurm, slurm_state
from orchestrator.config import SlurmConfig
from orchestrator.errors import ConfigError

SQUEUE = """@sq 41_[2-3]|PENDING|Resources
@sq 41_1|RUNNING|None
@sq 44|PENDING|Priority
"""
# scontrol show job -o, trimmed to the fields that matter (real lines carry ~60 of them)
SCONTROL = (
    "@sc JobId=42 ArrayJobId=41 ArrayTaskId=0 JobName=orch-p JobState=FAILED "
    "Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 RunTime=00:00:02\n"
    "@sc JobId=41 ArrayJobId=41 ArrayTaskId=1 JobName=orch-p JobState=RUNNING Reason=None "
    "ExitCode=0:0\n"
    "@sc JobId=45 JobName=orch-q JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15\n"
)
SACCT = """@sa 50|COMPLETED|0:0|None
@sa 51_0|CANCELLED by 0|0:15|None
@sa 51_[1-2]|PENDING|0:0|Resources
"""


def test_parse_squeue_and_scontrol_expands_arrays_and_prefers_the_live_view():
    jobs = parse_slurm(SQUEUE + SCONTROL)
    assert jobs["41_0"] == SlurmJob("41_0", "FAILED", "NonZeroExitCode", 3)
    assert jobs["41_1"] == SlurmJob("41_1", "RUNNING", "")  # squeue wins over scontrol
    assert jobs["41_2"].state == jobs["41_3"].state == "PENDING"
    assert jobs["41_3"].reason == "Resources"
    assert jobs["44"] == SlurmJob("44", "PENDING", "Priority")
    assert jobs["45"] == SlurmJob("45", "TIMEOUT", "TimeLimit", 0)


def test_parse_sacct_takes_the_first_word_of_the_state():
    jobs = parse_slurm(SACCT)
    assert jobs["50"] == SlurmJob("50", "COMPLETED", "", 0)
    assert jobs["51_0"].state == "CANCELLED"
    assert [jobs[f"51_{i}"].reason for i in (1, 2)] == ["Resources", "Resources"]


@pytest.mark.parametrize(
    ("word", "seen", "state", "note"),
    [
        ("PENDING", {}, "queued", "Slurm: PENDING (Resources)"),
        ("RUNNING", {}, "running", ""),
        ("COMPLETING", {}, "running", ""),
        ("COMPLETED", {"exit": 0, "results": True}, "succeeded", ""),
        ("FAILED", {"exit": 3}, "failed", ""),
        ("FAILED", {}, "failed", "Slurm: FAILED"),
        ("CANCELLED", {}, "cancelled", "Slurm: CANCELLED"),
        ("TIMEOUT", {"exit": 143}, "failed", "Slurm: TIMEOUT"),
        ("OUT_OF_MEMORY", {}, "failed", "Slurm: OUT_OF_MEMORY"),
        ("NODE_FAIL", {}, "lost", "Slurm: NODE_FAIL"),
        ("PREEMPTED", {"exit": 143}, "lost", "Slurm: PREEMPTED"),
        ("COMPLETED", {}, "failed", "Slurm: COMPLETED but the job left no exit code"),
    ],
)
def test_slurm_states_map_onto_orch_states(word, seen, state, note):
    from orchestrator.status import SeenRun, derive_state

    seen = SeenRun(**seen)
    job = SlurmJob("7", word, "Resources" if word == "PENDING" else "")
    got_state, got_note = slurm_state(derive_state(replace(seen, alive=True)), seen, job)
    assert got_state == state
    assert got_note.startswith(note)
    if word in ("TIMEOUT", "PREEMPTED", "NODE_FAIL"):
        assert "--resume" in got_note


def test_unknown_job_without_exit_code_is_lost_and_the_cancel_marker_wins():
    from orchestrator.status import SeenRun

    assert slurm_state("running", SeenRun(), None)[0] == "lost"
    assert slurm_state("failed", SeenRun(exit=1), None) == ("failed", "")
    marked = SeenRun(cancelled=True)
    assert slurm_state("running", marked, SlurmJob("7", "RUNNING"))[0] == "cancelled"


def test_resources_playbook_over_orch_yaml_and_sbatch_args():
    host = SlurmConfig(partition="gpu", time="01:00:00", gres="gpu:1", account="lab")
    got = resources(host, {"slurm": {"time": "00:10:00", "cpus_per_task": 4}})
    assert got == {
        "partition": "gpu",
        "account": "lab",
        "time": "00:10:00",
        "gres": "gpu:1",
        "cpus_per_task": "4",
    }
    assert sbatch_args(got, "orch-p", 3) == [
        "--parsable",
        "--job-name=orch-p",
        "--partition=gpu",
        "--account=lab",
        "--time=00:10:00",
        "--gres=gpu:1",
        "--cpus-per-task=4",
        "--array=0-2",
    ]
    assert "--array" not in " ".join(sbatch_args({}, "orch-p", None))


@pytest.mark.parametrize("bad", ["gpu; rm -rf ~", "a b", "$(id)", "x\n#SBATCH --uid=0"])
def test_resources_refuse_values_that_are_not_plain_words(bad):
    with pytest.raises(ConfigError, match="slurm.partition"):
        resources(SlurmConfig(), {"slurm": {"partition": bad}})
    with pytest.raises(ConfigError, match="slurm.nodes: unknown"):
        resources(SlurmConfig(), {"slurm": {"nodes": 2}})


def test_batch_and_submit_scripts_quote_paths_and_exit_with_the_job_code():
    from orchestrator.backends import Options
    from orchestrator.backends.slurm import SlurmBackend, batch_script
    from orchestrator.config import HostConfig
    from orchestrator.records import RunRecord
    from orchestrator.scripts import job_command
    from orchestrator.shell import quote, remote, trusted
    from orchestrator.transport import LocalHost
    from tests.test_scripts import launch_of

    host = LocalHost(HostConfig("hpc", "h", remote_dir="/srv/my runs;x", backend="slurm"))
    runs_dir = remote(host.config.remote_dir, "runs")
    expr = trusted(quote("p-s") + '"$SLURM_ARRAY_TASK_ID"')
    batch = batch_script(host, runs_dir, expr, job_command("{python} -m gpu_worker run x"))
    lines = batch.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert lines[1].startswith("D='/srv/my runs;x/runs'/p-s\"$SLURM_ARRAY_TASK_ID\"; ")
    assert lines[-2:] == [
        'echo $code > "$D/exit_code.tmp" && mv -f "$D/exit_code.tmp" "$D/exit_code"',
        "exit $code",
    ]
    assert "code=$?" in lines
    runs = [launch_of(f"p-s{i}", {"command": "x", "slurm": {"partition": "gpu"}}) for i in (0, 1)]
    script = SlurmBackend().submit_script(host, runs, Options())
    want = 'sbatch --parsable --job-name=orch-p --partition=gpu --array=0-1 --output="$R"/p-s%a'
    assert want in script
    assert "R='/srv/my runs;x/runs'" in script and "D='/srv/my runs;x/runs/p-s1'" in script
    assert '"slurm_job": \' "$job_1" > "$D/.run.json.tmp"' in script and "exit 64" in script
    after = RunRecord("t-1", "hpc", "t", 1.0, backend="slurm", job_id="41")
    queued = SlurmBackend().submit_script(host, runs[:1], Options(after=after))
    assert "--dependency=afterok:41 --kill-on-invalid-dep=yes" in queued
