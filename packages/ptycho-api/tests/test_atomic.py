"""Atomic writes: complete files or nothing, previous content kept on failure, normal permissions."""

from __future__ import annotations

import os

import pytest

from ptycho_api.atomic import atomic_path, atomic_write_text


def test_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failure_keeps_previous_file_and_removes_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_new_files_get_umask_permissions_and_replacements_keep_theirs(tmp_path):
    mask = os.umask(0o022)
    try:
        new = atomic_write_text(tmp_path / "new.txt", "x")
        assert new.stat().st_mode & 0o777 == 0o644
        existing = tmp_path / "shared.txt"
        existing.write_text("x")
        existing.chmod(0o664)
        atomic_write_text(existing, "y")
        assert existing.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(mask)
