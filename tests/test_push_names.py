"""File names that break line-based lists (issue 17, item 19), pushed to the loopback sshd: a
newline, a carriage return, a backslash, a Unicode line separator. Each arrives with its
content, and the next push sends and deletes nothing."""

from __future__ import annotations

from tests.conftest import git

ODD = [
    "gpu_worker/new\nline.py",
    "gpu_worker/carriage\rreturn.py",
    "gpu_worker/back\\slash.py",
    "gpu_worker/sep\u2028arator.py",
    "gpu_worker/next\x85line.py",
    "gpu_worker/\\n literally.py",
]


def test_odd_file_names_are_pushed_once(project, gpu, orch, tmp_path):
    for i, name in enumerate(ODD):
        (project / name).write_text(f"VALUE = {i}\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "odd names")
    res = orch("push", "--host", gpu, "--json")
    assert res.exit_code == 0, res.output
    code = tmp_path / "remote" / "code"
    for i, name in enumerate(ODD):
        assert (code / name).read_text() == f"VALUE = {i}\n", name
    res = orch("push", "--host", gpu)
    assert res.exit_code == 0, res.output
    assert "sent 0 file(s), deleted 0" in res.stdout, res.output
    for i, name in enumerate(ODD):
        assert (code / name).read_text() == f"VALUE = {i}\n", name
    # a change to one of them sends that one only; removing one deletes exactly it
    (project / ODD[0]).write_text("VALUE = 99\n")
    (project / ODD[2]).unlink()
    res = orch("push", "--host", gpu)
    assert "sent 1 file(s), deleted 1" in res.stdout, res.output
    assert (code / ODD[0]).read_text() == "VALUE = 99\n" and not (code / ODD[2]).exists()
    assert (code / ODD[5]).exists()
