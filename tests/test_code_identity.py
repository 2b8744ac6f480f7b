"""The pushed code's identity in results.json: read from `.orch-identity.json`, and when it is
missing or unreadable the job's log says so (it is never dropped silently)."""

from gpu_worker.runner import _code_identity


def test_identity_is_read_from_the_pushed_tree(tmp_path, capsys):
    (tmp_path / ".orch-identity.json").write_text('{"commit": "abc", "dirty": false}')
    assert _code_identity(str(tmp_path)) == {"commit": "abc", "dirty": False}
    assert capsys.readouterr().err == ""


def test_missing_identity_is_a_note(tmp_path, capsys):
    assert _code_identity(str(tmp_path)) is None
    err = capsys.readouterr().err
    assert err.startswith(f"note: no {tmp_path}/.orch-identity.json: results.json has no code")


def test_unreadable_identity_is_a_warning_naming_the_file(tmp_path, capsys):
    path = tmp_path / ".orch-identity.json"
    for text, why in (("{cut", "Expecting property name"), ("[1]", "expected a JSON object")):
        path.write_text(text)
        assert _code_identity(str(tmp_path)) is None
        err = capsys.readouterr().err
        assert err.startswith(f"warning: {path} is unreadable (") and why in err, err
