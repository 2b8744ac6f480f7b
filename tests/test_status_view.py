"""`orch status` as a person sees it: drawn in a real tmux pane at 80 and 100 columns (every run
id whole, no line wider than the pane), active runs plus the last few finished ones, a failed run
in one line; and a fresh clone finding the runs of its hosts (one line for a host that is down).

The runs are real run folders read through the real `local` host and a real sshd; the running
one has a real tmux session."""

import json
import shlex
import subprocess
import time

from orchestrator.config import load_config
from orchestrator.records import RunRecord, load_records, records_dir, save_record
from tests.helpers import orch_cmd, poll

TRACEBACK = ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad"]


def make_run(runs, run_id: str, started: float, exit=None, log=(), progress=None) -> None:
    """A run folder as a job leaves it (run.json; exit_code, results.json, log, progress)."""
    folder = runs / run_id
    folder.mkdir(parents=True)
    info = {"playbook": run_id.split("-")[0], "started_at": started, "hourly_rate": 2.5}
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "log.txt").write_text("".join(f"{line}\n" for line in log))
    if progress is not None:
        (folder / "progress.json").write_text(json.dumps(progress | {"updated_at": time.time()}))
    if exit is not None:
        (folder / "exit_code").write_text(f"{exit}\n")
        if exit == 0:
            (folder / "results.json").write_text("{}")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def in_pane(project, width: int, *args: str) -> list[str]:
    """`orch ARGS` in a detached tmux pane `width` columns wide; its screen, wrapped lines
    joined (so a line the table overflowed shows up wider than the pane)."""
    name = f"view{width}{len(args)}"
    cmd = shlex.join(["env", "-u", "COLUMNS", "-u", "LINES", *orch_cmd(*args)])  # the pane's
    cmd += "; echo __end__; sleep 60"
    tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", "50", "-c", str(project), cmd)
    try:
        screen = poll(
            lambda: "__end__" in (t := tmux("capture-pane", "-p", "-J", "-t", name)) and t, 30
        )
    finally:
        tmux("kill-session", "-t", name)
    return screen.split("__end__")[0].rstrip().splitlines()


def test_status_fits_80_and_100_columns_and_keeps_run_ids_whole(project, orch):
    config = load_config()
    runs = project / ".orch" / "local" / "runs"
    now = time.time()
    done = [f"quickwin-20261124-1012{i:02d}-ab{i:02d}" for i in range(7)]
    for i, run_id in enumerate(done):
        make_run(runs, run_id, now - 9000 + i * 100, exit=0, log=["done"])
    failed = "validation-20261125-080000-dead"
    make_run(runs, failed, now - 2000, exit=3, log=["step 1", *TRACEBACK])
    live = "finetune-20261126-090000-beef"
    progress = {"done": 12, "total": 40, "method": "ensemble", "images_per_s": 1.5, "eta_s": 300}
    make_run(runs, live, now - 600, progress=progress)
    lost = "quickwin-20261126-100000-0a0a"
    make_run(runs, lost, now - 300)
    for run_id in [*done, failed, live, lost]:
        started = json.loads((runs / run_id / "run.json").read_text())["started_at"]
        save_record(config, RunRecord(run_id, "local", run_id.split("-")[0], started))
    tmux("new-session", "-d", "-s", f"orch-{live}", "sleep 300")  # the live run's job
    try:
        screen = in_pane(project, 80, "status")
        text = "\n".join(screen)
        assert all(len(line) <= 80 for line in screen), "\n" + text
        shown = [*done[-3:], failed, live, lost]  # the last 5 finished, the active one
        assert all(rid in text for rid in shown), "\n" + text
        assert not any(rid in text for rid in done[:4]), "\n" + text
        assert "… 4 older runs (orch status -a)" in text
        assert f"{failed}: failed (exit code 3): ValueError: bad" in text
        assert "Traceback" not in text and "running" in text and "12/40" in text
        wide = in_pane(project, 100, "status", "-a")
        assert all(len(line) <= 100 for line in wide), "\n" + "\n".join(wide)
        assert all(rid in "\n".join(wide) for rid in [*done, failed, live, lost])
        assert len(wide[1]) > len(screen[1])  # the wider pane shows more columns
    finally:
        subprocess.run(["tmux", "kill-server"], capture_output=True)
    named = orch("status", failed)  # named: the log's tail, as before
    assert "last lines of" in named.stdout and "Traceback" in named.stdout
    assert orch("status", "--json").stdout.count('"run_id"') == 10  # JSON: every run


def test_fresh_clone_finds_the_hosts_runs(gpu, project, orch, tmp_path):
    (project / "orch.yaml").write_text(
        (project / "orch.yaml").read_text() + "  down: {host: 127.0.0.1, port: 1, timeout: 2}\n"
    )
    runs = tmp_path / "remote" / "runs"
    mine = "quickwin-20261124-101200-ab12"
    make_run(runs, mine, time.time() - 100, exit=0, log=["done"])
    make_run(runs, "Not-A-Run", time.time() - 50, exit=0)  # no valid id: never a local file
    assert not records_dir(load_config()).exists()
    res = orch("status")
    assert res.exit_code == 3, res.output
    assert mine in res.stdout and "succeeded" in res.stdout and "Not-A-Run" not in res.stdout
    (warning,) = res.stderr.strip().splitlines()  # one line for the host that is down
    assert warning.startswith("orch: down")
    (record,) = load_records(load_config())
    assert (record.run_id, record.host, record.playbook) == (mine, "gpu", "quickwin")
    logs = orch("logs", "ab12")  # the adopted record names the run for every command
    assert logs.exit_code == 0 and logs.stdout == "done\n"
    assert sorted(p.name for p in records_dir(load_config()).iterdir()) == [f"{mine}.json"]


def test_what_a_host_sends_never_names_a_local_path():
    from orchestrator.status import parse_status, to_status

    info = '{"playbook": "p", "parent": "../../etc", "after": "ok-1", "shard": "0"}'
    text = f"@now 10\nok-2/run.json:{info}\n../x/run.json:{{}}\nEVIL/run.json:{{}}\n@big ../y/log"
    dump = parse_status(text, 0.0)
    assert list(dump.runs) == ["ok-2"]
    status = to_status("gpu", "ok-2", dump.runs["ok-2"], dump.now, 0.0)
    assert (status.parent, status.after, status.shard) == (None, "ok-1", None)
