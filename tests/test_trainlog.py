"""A `command:` job's progress from its log (the `orch-progress` protocol and Trainer lines) and
the states of command jobs and queued runs, from canned status output: pure functions, plus the
host-side extraction run by real bash and awk on a real log file."""

import subprocess

import pytest

from gpu_worker.contract.schema import parse_progress_line, progress_line
from orchestrator import trainlog
from orchestrator.states import RunState
from orchestrator.status import SeenRun, derive_state, parse_status, to_status

TRAINER_LOG = (
    "Loading checkpoint shards: 100%|██████████| 2/2 [00:01<00:00,  1.9it/s]\n"
    "  0%|          | 0/500 [00:00<?, ?it/s]\r  4%|▍         | 20/500 [00:05<02:00,  4.0it/s]"
    "\r"
    + " "
    * 40
    + "\r{'loss': '2.31', 'grad_norm': '1.5', 'learning_rate': '4.9e-05', 'epoch': '0.04'}\n"
    "\r  8%|▊         | 40/500 [00:10<01:55,  4.0it/s]"
)


def test_progress_line_round_trip_and_malformed_words():
    line = progress_line(120, 500, loss=0.41, eval_cer=0.38, stage="warmup")
    assert line == "orch-progress step=120 total=500 loss=0.41 eval_cer=0.38 stage=warmup"
    assert parse_progress_line(line) == {
        "step": 120,
        "total": 500,
        "loss": 0.41,
        "eval_cer": 0.38,
        "stage": "warmup",
    }
    said = parse_progress_line("orch-progress step=x total=5 loss=nan junk =3 k=" + "a" * 50)
    assert said == {"total": 5}
    assert parse_progress_line("step=1 total=2") is None
    with pytest.raises(ValueError, match="not a key=value word"):
        progress_line(1, note="two words")


def extract(tmp_path, text: str) -> dict[str, str]:
    log = tmp_path / "log.txt"
    log.write_text(text, encoding="utf-8")
    script = trainlog.extract_script(f'"{log}"')
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return {line[0]: line[2:] for line in out.stdout.splitlines()}


def test_trainer_lines_give_step_total_and_metrics(tmp_path):
    tagged = extract(tmp_path, TRAINER_LOG)
    assert tagged["T"] == "40/500"
    said = trainlog.parse(tagged)
    assert (said.step, said.total) == (40, 500)
    assert said.metrics == {"loss": 2.31, "grad_norm": 1.5, "learning_rate": 4.9e-05, "epoch": 0.04}
    assert trainlog.eta(said, 10.0) == pytest.approx(115.0)


def test_the_protocol_wins_over_trainer_lines_and_the_last_line_counts(tmp_path):
    text = TRAINER_LOG + "\norch-progress step=3 total=9 cer=0.5\norch-progress step=4 total=9\n"
    said = trainlog.parse(extract(tmp_path, text))
    assert (said.step, said.total) == (4, 9)
    assert said.metrics == {"loss": 2.31, "grad_norm": 1.5, "learning_rate": 4.9e-05, "epoch": 0.04}
    assert trainlog.parse(extract(tmp_path, "hello\nworld\n")) is None


CANNED = """@now 1000
@alive orch-q-1
c-1/run.json:{"run_id": "c-1", "playbook": "train", "started_at": 990, "own_command": true}
c-1/exit_code:0
c-1/progress.txt:P orch-progress step=5 total=5 loss=0.1
w-1/run.json:{"run_id": "w-1", "playbook": "ocr", "started_at": 990}
w-1/exit_code:0
q-1/run.json:{"run_id": "q-1", "playbook": "eval", "started_at": 995, "after": "c-9"}
q-1/waiting:c-9 b-2
s-1/run.json:{"run_id": "s-1", "playbook": "eval", "started_at": 995, "after": "c-9"}
s-1/exit_code:78
@has s-1/skipped:0
"""


def test_states_of_command_jobs_and_queued_runs():
    dump = parse_status(CANNED, 0.0)
    got = {rid: to_status("h", rid, seen, dump.now, 1000.0) for rid, seen in dump.runs.items()}
    c, w, q, s = got["c-1"], got["w-1"], got["q-1"], got["s-1"]
    assert (c.state, c.done, c.total, c.metrics) == (RunState.SUCCEEDED, 5, 5, {"loss": 0.1})
    assert (w.state, w.note) == (RunState.FAILED, "exit 0 but no results.json")
    assert (q.state, q.after, q.note) == (RunState.QUEUED, "c-9", "after c-9, behind b-2")
    assert (s.state, s.note) == (RunState.SKIPPED, "not started: run c-9 did not succeed")
    assert derive_state(SeenRun(info={"own_command": True}, exit=3)) == RunState.FAILED
