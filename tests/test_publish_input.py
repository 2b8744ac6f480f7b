"""`orch publish` against hostile results files and tricky READMEs: nothing is written outside
results/ and the README, markers count only on their own line outside code, and a README that
would come out broken is refused before anything is written."""

import json

import pytest

from orchestrator import markers, readme
from tests.conftest import git
from tests.test_publish import OLD_BLOCK, RUN, TAIL, USER_TEXT, commits, pub, write_results

__all__ = ["pub"]  # the fixture, shared with test_publish.py

START, END = markers.START, markers.END


def _tamper(folder, **run_fields):
    path = folder / "results.json"
    doc = json.loads(path.read_text())
    doc["run"].update(run_fields)
    path.write_text(json.dumps(doc))


def _snapshot(root):
    return (root / "README.md").read_text(), commits(root), git(root, "status", "--porcelain")


def _unchanged(root, before):
    assert _snapshot(root) == before
    assert not (root / "results" / "plots").exists()


@pytest.mark.parametrize(
    "playbook",
    ["../../../x", "/tmp/orch-hostile-x", f"x\n{END}\n# pwned", "a b", "..", "x/../y"],
)
def test_hostile_playbook_name_is_refused_and_nothing_is_written(pub, orch, playbook):
    _tamper(pub / "results" / RUN, playbook=playbook)
    before = _snapshot(pub)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 1
    assert f"results/{RUN}/results.json: run.playbook:" in res.stderr
    assert "is not a safe name" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    _unchanged(pub, before)
    assert not (pub.parent / "x.png").exists() and not list(pub.parent.glob("*.png"))


def test_hostile_method_name_is_refused(pub, orch):
    path = pub / "results" / RUN / "results.json"
    doc = json.loads(path.read_text())
    doc[f"evil |\n{START}"] = doc.pop("combined")
    path.write_text(json.dumps(doc))
    before = _snapshot(pub)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 1 and "results.json: method:" in res.stderr
    _unchanged(pub, before)


def test_a_folder_that_is_not_a_run_id_is_refused(pub, orch):
    write_results(pub, "My Run", {"baseline": 0.5})
    before = (pub / "README.md").read_text(), commits(pub)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 1 and "results/My Run: not a run id" in res.stderr
    assert (pub / "README.md").read_text() == before[0] and commits(pub) == before[1]


def test_provenance_text_is_escaped_and_the_next_publish_still_works(pub, orch):
    _tamper(
        pub / "results" / RUN,
        host=f"evil\n{END}\n<img src=x onerror=alert(1)>",
        gpu="**bold** [link](http://x) | cell",
        data={"source": f"/d`{END}`\n```", "split": "test\r\n## h", "n_samples": 5, "seed": 1},
    )
    assert orch("publish", "--no-hub").exit_code == 0
    text = (pub / "README.md").read_text()
    starts, ends = markers.find_markers(text)
    assert len(starts) == len(ends) == 1
    assert text.startswith(USER_TEXT) and text.endswith(TAIL)
    facts = next(line for line in text.splitlines() if line.startswith("run `"))
    assert "evil " in facts and "\\<img src=x onerror=alert(1)\\>" in facts
    assert "\\*\\*bold\\*\\* \\[link\\](http://x) \\| cell" in facts
    assert "<img" not in text.replace("\\<img", "") and "\n```" not in text
    write_results(pub, "quickwin-20261125-090000-cd34", {"baseline": 0.40}, t=1.9e9)
    assert orch("publish", "--no-hub").exit_code == 0  # the README is still publishable
    assert "quickwin-20261125-090000-cd34" in (pub / "README.md").read_text()


def test_markers_in_code_or_inline_do_not_count(pub, orch):
    docs = (
        f"Put `{START}` and `{END}` in your README, like this:\n\n"
        f"```markdown\n{START}\nexample\n{END}\n```\n\n"
        f"~~~~\n{END}\n~~~~\n\n    {START}\n\n"
    )
    (pub / "README.md").write_text(USER_TEXT + docs + OLD_BLOCK + TAIL)
    git(pub, "commit", "-qam", "docs about markers")
    res = orch("publish", "--no-hub")
    assert res.exit_code == 0, res.output
    text = (pub / "README.md").read_text()
    assert text.startswith(USER_TEXT + docs + START + "\n### quickwin")
    assert "old table" not in text and text.endswith(END + "\n" + TAIL)


def test_readme_that_would_come_out_broken_is_refused(pub, orch):
    broken = USER_TEXT + "```python\nprint('a fence never closed')\n"  # no markers outside code
    (pub / "README.md").write_text(broken)
    git(pub, "commit", "-qam", "open fence")
    before = _snapshot(pub)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 1 and "would not keep one" in res.stderr
    _unchanged(pub, before)


def test_replace_block_unit_rules():
    text = f"a\n{START}\nold\n{END}\nb\n"
    assert markers.replace_block(text, "new") == f"a\n{START}\nnew\n{END}\nb\n"
    for bad in (f"x\n{END}\ny", "```\nopen fence", f"x\n  {START}"):
        with pytest.raises(markers.MarkerError, match="nothing was written"):
            markers.replace_block(text, bad)
    inline = f"see `{START}` here\n{START}\nold\n{END}\n"
    assert markers.replace_block(inline, "n") == f"see `{START}` here\n{START}\nn\n{END}\n"
    with pytest.raises(markers.MarkerError, match="fix them by hand"):
        markers.replace_block(f"{START}\n{START}\n{END}\n", "n")
    assert readme.md_text("a\nb<!--|") == "a b\\<\\!--\\|"
    assert readme.md_code("x`y\nz") == "`x'y z`"
