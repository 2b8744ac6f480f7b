"""push's file list and code identity: a git failure is an error, not "not a git repo"."""

import pytest

from orchestrator.config import load_config
from orchestrator.errors import OrchError
from orchestrator.sync import code_identity, local_manifest
from tests.conftest import git


def test_a_broken_git_index_is_an_error_not_a_walk(project):
    config = load_config()
    assert "gpu_worker/engine.py" in local_manifest(config)
    (project / ".git" / "index").write_bytes(b"DIRC garbage")
    with pytest.raises(OrchError, match="git ls-files.*failed"):
        local_manifest(config)


def test_outside_git_the_tree_is_walked_and_a_fresh_repo_has_no_commit(project, tmp_path):
    import shutil

    shutil.rmtree(project / ".git")
    config = load_config()
    files = local_manifest(config)
    assert "gpu_worker/engine.py" in files and "notes.txt" not in files
    assert code_identity(config, files).commit is None
    git(project, "init", "-q")
    ident = code_identity(config, local_manifest(config))
    assert ident.commit is None and ident.dirty
