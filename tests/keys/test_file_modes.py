"""keys.file_modes: loose permissions are reported with the path, the mode and the fix."""

from keys.file_modes import GROUP_OR_OTHERS, GROUP_OR_OTHERS_WRITE, loose_mode_problem


def test_private_and_missing_files_are_fine(tmp_path):
    path = tmp_path / "secret"
    assert loose_mode_problem(path, "audit key") is None
    path.write_bytes(b"x")
    path.chmod(0o600)
    assert loose_mode_problem(path, "audit key") is None


def test_group_readable_secret_is_reported(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"x")
    path.chmod(0o640)
    problem = loose_mode_problem(path, "audit key", forbid=GROUP_OR_OTHERS)
    assert problem is not None
    assert str(path) in problem
    assert "0640" in problem
    assert "chmod 600" in problem


def test_store_rule_allows_reading_but_not_writing(tmp_path):
    path = tmp_path / "grants.sqlite3"
    path.write_bytes(b"x")
    path.chmod(0o644)
    assert loose_mode_problem(path, "grant store", forbid=GROUP_OR_OTHERS_WRITE) is None
    path.chmod(0o666)
    problem = loose_mode_problem(path, "grant store", forbid=GROUP_OR_OTHERS_WRITE)
    assert problem is not None
    assert "writable by group or others" in problem
