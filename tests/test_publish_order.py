"""`orch publish` step by step: every check before any change, each step's outcome printed in
order, the exit code saying how far it got; a detached HEAD refused before committing; every
state an interruption can leave completed by the next publish; file modes kept; absurd rates
plotted on a clipped axis. Real git repositories (a bare remote with a refusing hook, a failing
pre-commit hook) and the stand-in Hub."""

import json
import os
import shutil
import stat
import subprocess

import pytest

from tests.conftest import git
from tests.test_publish import RUN, commits, pub, write_results
from tests.test_publish_hub import _endpoint, hub, hub_server, orch_sub

__all__ = ["pub", "hub", "hub_server", "_endpoint"]  # fixtures


def bare_origin(root, tmp_path, refuse: bool = False):
    """A bare repository as `origin` with main pushed; `refuse`: its pre-receive hook says no."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    git(root, "remote", "add", "upstream", str(bare))
    git(root, "push", "-q", "-u", "upstream", "main")
    if refuse:
        hook = bare / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
        hook.chmod(0o755)
    return bare


def test_outcomes_in_order_and_exit_code_6_when_only_the_hub_failed(pub, hub, tmp_path):
    bare = bare_origin(pub, tmp_path)
    hub.bump_before_commit = True  # someone edits the card while we publish: 412 at upload
    res = orch_sub(pub, "publish", "--push")
    assert res.returncode == 6, res.stderr
    out = res.stdout.splitlines()
    steps = [line.split(" ", 2)[:2] for line in out if line.startswith(("git:", "hub:"))]
    assert steps == [["git:", "committed"], ["git:", "pushed"]]
    assert out.index(next(x for x in out if x.startswith("  wrote"))) < out.index(
        next(x for x in out if x.startswith("git: committed"))
    )
    [err] = res.stderr.strip().splitlines()
    assert "hub: me/odia-ocr changed on the Hub while publishing" in err
    assert "git is done; re-run `orch publish` to retry the upload" in err
    assert git(bare, "log", "-1", "--format=%s", "main").startswith(f"results: {RUN}")
    hub.bump_before_commit = False
    again = orch_sub(pub, "publish", "--push")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert "git: nothing new to commit" in lines
    assert any(x.startswith("hub: uploaded README.md, plots/history/quickwin.png") for x in lines)


def test_exit_5_when_the_push_is_refused_and_hub_not_tried(pub, hub, tmp_path):
    bare_origin(pub, tmp_path, refuse=True)
    res = orch_sub(pub, "publish", "--push")
    assert res.returncode == 5
    assert "git: committed" in res.stdout and "git: pushed" not in res.stdout
    assert "hub:" not in res.stdout and not hub.repos["me/odia-ocr"].commits
    assert "git: push to upstream failed" in res.stderr and "commit is local only" in res.stderr


def test_exit_4_when_the_commit_fails_then_the_next_publish_completes(pub, orch):
    hook = pub / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'lint failed' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = commits(pub)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 4
    assert "wrote" in res.stdout and "git:" not in res.stdout
    assert "git: commit failed" in res.stderr and "nothing was committed" in res.stderr
    assert commits(pub) == before
    hook.unlink()
    ok = orch("publish", "--no-hub")  # README holds only orch's block change: not "edits"
    assert ok.exit_code == 0, ok.output
    assert int(commits(pub)) == int(before) + 1
    assert not git(pub, "status", "--porcelain", "README.md", "results/plots")


def test_push_on_a_detached_head_is_refused_before_committing(pub, orch, tmp_path):
    """Issue 17 item 13: a TypeError after the commit landed on the detached HEAD."""
    bare_origin(pub, tmp_path)
    git(pub, "checkout", "-q", "--detach")
    before = commits(pub), (pub / "README.md").read_text()
    res = orch("publish", "--no-hub", "--push")
    assert res.exit_code == 1
    assert res.stderr.strip() == (
        "orch: error: git: HEAD is detached, so --push has no branch to push; check out a "
        "branch (or leave out --push); nothing was changed"
    )
    assert (commits(pub), (pub / "README.md").read_text()) == before
    assert not (pub / "results" / "plots").exists()


def _tree(root, paths):
    return git(root, "ls-tree", "-r", "HEAD", "--", *paths)


def test_every_state_an_interruption_leaves_is_completed_by_the_next_publish(pub, orch, tmp_path):
    """Issue 17 item 10. Publish writes whole files (temp + rename) in plan order, README.md
    last, then commits: an interruption (Ctrl-C) can leave any prefix of those writes. Each such
    state, rebuilt here from the plan, is completed by the next plain `orch publish`."""
    from orchestrator.config import load_config
    from orchestrator.publish import PublishOptions, plan_publish

    plan = plan_publish(load_config(), (), PublishOptions(to_hub=False))
    assert plan.writes[-1] == plan.readme_path and len(plan.writes) == 4
    rel = [str(p.relative_to(pub.resolve())) for p in plan.writes]
    reference = tmp_path / "reference"
    shutil.copytree(pub, reference)
    os.chdir(reference)
    assert orch("publish", "--no-hub").exit_code == 0
    for k in range(len(plan.writes) + 1):
        copy = tmp_path / f"cut-{k}"
        shutil.copytree(pub, copy)
        for path in plan.writes[:k]:  # the files written before the interruption
            target = copy / path.relative_to(pub.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            data = plan.readme_new.encode() if path == plan.readme_path else plan.files[path]
            target.write_bytes(data)
        os.chdir(copy)
        res = orch("publish", "--no-hub")
        assert res.exit_code == 0, (k, res.output)
        assert _tree(copy, rel) == _tree(reference, rel), k
        assert not git(copy, "status", "--porcelain", *rel), k
        assert (copy / "README.md").read_text() == (reference / "README.md").read_text()


def test_user_edits_outside_the_block_are_still_refused(pub, orch):
    text = (pub / "README.md").read_text()
    (pub / "README.md").write_text(text.replace("Our model", "My model"))
    res = orch("publish", "--no-hub")
    assert res.exit_code == 1 and "README.md has uncommitted edits" in res.stderr


def test_files_keep_their_mode_and_new_ones_get_the_umasks(pub, orch):
    """Issue 17 item 18: README.md and the plots were rewritten with mode 0600."""
    old = os.umask(0o022)
    try:
        (pub / "README.md").chmod(0o664)
        assert orch("publish", "--no-hub").exit_code == 0
        assert stat.S_IMODE((pub / "README.md").stat().st_mode) == 0o664
        plots = pub / "results" / "plots"
        for png in [plots / "quickwin.png", plots / "history" / "quickwin.png"]:
            assert stat.S_IMODE(png.stat().st_mode) == 0o644, png
        (plots / "quickwin.png").chmod(0o640)
        write_results(pub, "quickwin-20261125-090000-cd34", {"baseline": 0.3}, t=1.9e9)
        assert orch("publish", "--no-hub").exit_code == 0
        assert stat.S_IMODE((plots / "quickwin.png").stat().st_mode) == 0o640
        assert stat.S_IMODE((pub / "README.md").stat().st_mode) == 0o664
    finally:
        os.umask(old)


@pytest.mark.parametrize("field", ["cer", "time_per_image_s"])
def test_huge_rates_are_plotted_on_a_clipped_axis(pub, orch, field):
    """Issue 17 item 15: `cer: 1e308` (valid by schema) crashed `publish --dry-run`."""
    path = pub / "results" / RUN / "results.json"
    doc = json.loads(path.read_text())
    doc["combined"][field] = 1e308
    if field == "cer":
        doc["combined"]["cer_ci"] = [0.2, 1e308]
    path.write_text(json.dumps(doc))
    res = orch("publish", "--dry-run")
    assert res.exit_code == 0, res.output
    assert orch("publish", "--no-hub").exit_code == 0
    from orchestrator.plot import tradeoff_figure

    title = tradeoff_figure(doc, "quickwin").axes[0].get_title()
    assert "off scale" in title and "combined" in title
    assert "1e+308" in (pub / "README.md").read_text()
