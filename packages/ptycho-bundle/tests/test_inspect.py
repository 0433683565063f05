"""``inspect`` reports content and verification results; ``format_inspection`` renders them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_helpers import read_members, rebuild

from ptycho_bundle import BundleError, format_inspection, inspect


def test_inspect_valid_archive(archive: Path) -> None:
    report = inspect(archive.parent)
    assert report["ok"] and report["errors"] == []
    assert report["path"] == str(archive) and report["kind"] == "zip"
    assert report["format_version"] == 2 and report["legacy"] is False
    assert report["backend"] == "pytorch"
    assert report["params"]["N"] == 64 and report["config"]["model"]["N"] == 64
    assert report["weights"]["physics/probe"] == {"shape": [16, 16], "dtype": "complex64"}
    assert report["native"] == ["autoencoder/model.pth", "diffraction_to_obj/model.pth"]
    assert report["history_keys"] == ["loss", "val_loss"]
    assert {m["name"] for m in report["members"]} == set(read_members(archive))
    assert all(m["status"] == "ok" for m in report["members"])
    assert json.loads(json.dumps(report)) == report  # JSON-serialisable for `ptycho inspect --json`
    text = format_inspection(report)
    for expected in (
        "ptycho-bundle format 2",
        "backend:   pytorch",
        "N=64  gridsize=2  intensity_scale=1234.5",
        "physics/probe",
        "(16, 16) complex64",
        "verification: OK",
    ):
        assert expected in text, text


def test_inspect_reports_tampered_members_without_raising(tmp_path: Path, archive: Path) -> None:
    tampered = read_members(archive)["config.json"].replace(b'"N": 64', b'"N": 46')
    path = rebuild(
        archive,
        tmp_path / "t.zip",
        replace={"config.json": tampered, "extra.txt": b"x"},
        drop=["history.json"],
        fix_checksums=False,
    )
    report = inspect(path)
    assert not report["ok"]
    status = {m["name"]: m["status"] for m in report["members"]}
    assert "checksum mismatch" in status["config.json"]
    assert "not listed" in status["extra.txt"]
    assert "missing" in status["history.json"]
    assert status["weights.h5"] == "ok"
    assert "verification: FAILED (4 problems)" in format_inspection(report)


def test_inspect_raises_for_structural_problems(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"nope")
    with pytest.raises(BundleError, match="not a readable ZIP"):
        inspect(tmp_path / "x.zip")
