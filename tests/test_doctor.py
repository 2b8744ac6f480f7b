"""`orch doctor`'s script on a real shell: model paths with hostile characters are quoted, and
their glob characters still match."""

import subprocess

import pytest

from orchestrator.config import HostConfig
from orchestrator.doctor import check_script, glob_words

HOSTILE = "m o;$(touch pwned) `touch pwned2` 'q\" &"  # `[` starts a class: a glob character


@pytest.fixture
def models(tmp_path):
    root = tmp_path / HOSTILE
    for name in ("ckpt-1", "ckpt-2", "ckpt-x", "*"):
        (root / name).mkdir(parents=True)
    return root


def counts(tmp_path, paths):
    host = HostConfig("local", "localhost", remote_dir=str(tmp_path / "remote"))
    res = subprocess.run(
        ["bash", "-c", check_script(host, paths)], cwd=tmp_path, capture_output=True, text=True
    )
    seen = dict(line.partition("=")[::2] for line in res.stdout.splitlines() if "=" in line)
    return [int(seen[f"path{i}"]) for i in range(len(paths))]


def test_hostile_model_paths_are_quoted_and_globs_still_match(tmp_path, models):
    paths = [
        str(models),  # no glob: one literal folder
        f"{models}/ckpt-*",  # `*` expands, the rest of the path is literal
        f"{models}/ckpt-?",
        f"{models}/ckpt-[12]",
        f"{models}/ckpt-[!x]",
        f"{models}/*",
        f"{models}/nothing-*",
        f"{tmp_path}/m o;$(touch pwned2)/*",  # a similar, absent folder
    ]
    assert counts(tmp_path, paths) == [1, 3, 3, 2, 2, 4, 0, 0]
    assert not list(tmp_path.rglob("pwned*")), "a model path ran as a command"


def test_glob_words_quote_everything_but_the_wildcards():
    assert glob_words("/a b/c-*.bin") == "'/a b/c-'*.bin"
    assert glob_words("~/m;$(x)/ck-?") == "\"$HOME\"/'m;$(x)/ck-'?"
    assert glob_words("/m/ck-[1;2]") == "/m/ck-[1\\;2]"
    assert glob_words("/m/[") == "'/m/['"  # no closing bracket: a literal `[`
