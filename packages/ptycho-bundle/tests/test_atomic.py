"""Writing is atomic: a failure mid-write leaves the previous archive intact and no temporary files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ptycho_bundle import BundleError, load_bundle, save_bundle
from ptycho_bundle import writer as writer_module


class DiskFull(OSError):
    """Injected write failure."""


def test_failure_mid_write_keeps_the_old_archive(
    archive: Path, model_args: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = archive.read_bytes()
    listing = sorted(p.name for p in archive.parent.iterdir())
    real_write = writer_module._write_member
    calls: list[str] = []

    def failing_write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
        calls.append(name)
        if len(calls) == 4:
            raise DiskFull(28, "No space left on device")
        real_write(zf, name, data)

    monkeypatch.setattr(writer_module, "_write_member", failing_write)
    with pytest.raises(BundleError, match="cannot write the archive") as info:
        save_bundle(archive.parent, **{**model_args, "backend": "tensorflow"})
    assert str(archive) in str(info.value) and isinstance(info.value.__cause__, DiskFull)
    assert len(calls) == 4  # it failed in the middle, after three members were written
    assert archive.read_bytes() == before
    assert sorted(p.name for p in archive.parent.iterdir()) == listing
    assert load_bundle(archive).backend == "pytorch"


def test_successful_write_replaces_the_archive(archive: Path, model_args: dict) -> None:
    save_bundle(archive.parent, **{**model_args, "backend": "tensorflow"})
    assert load_bundle(archive).backend == "tensorflow"
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]


def test_invalid_input_writes_nothing_and_names_the_target(
    tmp_path: Path, model_args: dict
) -> None:
    with pytest.raises(BundleError, match=r"wts\.h5\.zip: params: required keys \['N'\]"):
        save_bundle(tmp_path, **{**model_args, "params": {"gridsize": 1, "intensity_scale": 1.0}})
    assert list(tmp_path.iterdir()) == []
