"""Every reading rule of bundle.md part 2 rejects hostile or broken archives with a clear BundleError."""

from __future__ import annotations

import io
import json
import os
import time
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from bundle_helpers import patch_central_directory, read_members, rebuild, write_zip

from ptycho_bundle import BundleError, BundleLimits, load_bundle
from ptycho_bundle.limits import GiB, MiB


def _assert_rejected(path: Path, *patterns: str, **kwargs: object) -> BundleError:
    with pytest.raises(BundleError) as info:
        load_bundle(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, message
    for pattern in patterns:
        assert pattern in message, message
    return info.value


def test_too_many_members(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "many.zip", ((f"m{i}", b"") for i in range(1001)))
    _assert_rejected(path, "1001 members", "max_members=1000")


def test_too_many_members_with_lowered_limit(archive: Path) -> None:
    _assert_rejected(archive, "max_members=5", limits=BundleLimits(max_members=5))


def test_oversized_member_with_lowered_limit(archive: Path) -> None:
    _assert_rejected(
        archive, "'weights.h5'", "max_member_size=4096", limits=BundleLimits(max_member_size=4096)
    )


def test_oversized_total_with_lowered_limit(archive: Path) -> None:
    total = sum(len(data) for data in read_members(archive).values())
    _assert_rejected(
        archive, "max_total_size", f"{total}", limits=BundleLimits(max_total_size=total - 1)
    )


def test_sizes_come_from_the_declared_sizes_not_from_decompressing(
    tmp_path: Path, archive: Path
) -> None:
    # The central directory claims 3 GiB for a member that holds a few bytes: the limit must fire on
    # the declared size (with the default limits) before anything is read or decompressed.
    data = patch_central_directory(archive.read_bytes(), "params.json", file_size=3 * GiB)
    path = tmp_path / "liar.zip"
    path.write_bytes(data)
    start = time.perf_counter()
    _assert_rejected(
        path, "'params.json'", f"declared size {3 * GiB}", "max_member_size=2147483648"
    )
    assert time.perf_counter() - start < 1.0


def test_declared_total_over_default_limit(tmp_path: Path, archive: Path) -> None:
    data = archive.read_bytes()
    for name in ("params.json", "config.json", "weights.h5"):
        data = patch_central_directory(data, name, file_size=int(1.9 * GiB))
    path = tmp_path / "liar.zip"
    path.write_bytes(data)
    # the ratio limit would fire first on these liars; lift it to reach the default total limit
    _assert_rejected(
        path, "'weights.h5'", "max_total_size=4294967296", limits=BundleLimits(max_ratio=1e12)
    )


def test_suspicious_compression_ratio(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bomb.zip", [("manifest.json", b"{}"), ("zeros", bytes(2 * MiB))])
    _assert_rejected(path, "'zeros'", "compression ratio", "max_ratio=200")


def test_small_members_are_exempt_from_the_ratio_limit(tmp_path: Path, archive: Path) -> None:
    _assert_rejected(
        archive, "compression ratio", limits=BundleLimits(ratio_min_size=100, max_ratio=2)
    )
    load_bundle(archive, limits=BundleLimits(ratio_min_size=MiB, max_ratio=2))


def test_duplicate_names(tmp_path: Path, archive: Path) -> None:
    members = list(read_members(archive).items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate we want
        path = write_zip(tmp_path / "dup.zip", [*members, ("params.json", b"{}")])
    _assert_rejected(path, "'params.json'", "duplicate")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/passwd", "absolute path"),
        ("../evil", "'..'"),
        ("autoencoder/../../evil", "'..'"),
        ("autoencoder\\model.pth", "backslash"),
        ("C:/evil", "drive letter"),
    ],
)
def test_unsafe_member_names(tmp_path: Path, archive: Path, name: str, reason: str) -> None:
    members = list(read_members(archive).items())
    path = write_zip(tmp_path / "names.zip", [*members, (zipfile.ZipInfo(name), b"x")])
    _assert_rejected(path, repr(name), reason)


def test_tampered_member_fails_its_checksum(tmp_path: Path, archive: Path) -> None:
    original = read_members(archive)["params.json"]
    tampered = original.replace(b'"N": 64', b'"N": 46')  # same size: only the checksum can tell
    assert tampered != original
    path = rebuild(
        archive, tmp_path / "t.zip", replace={"params.json": tampered}, fix_checksums=False
    )
    _assert_rejected(path, "'params.json'", "checksum mismatch")


def test_size_differing_from_manifest(tmp_path: Path, archive: Path) -> None:
    path = rebuild(
        archive, tmp_path / "t.zip", replace={"history.json": b"{}"}, fix_checksums=False
    )
    _assert_rejected(path, "'history.json'", "manifest.json says")


def test_truncated_file(tmp_path: Path, archive: Path) -> None:
    data = archive.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 10):
        path = tmp_path / f"cut{cut}.zip"
        path.write_bytes(data[:cut])
        _assert_rejected(path)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "wts.h5.zip"
    path.write_text("this is not a zip")
    _assert_rejected(path, "not a readable ZIP")


def test_missing_manifest_member(tmp_path: Path, archive: Path) -> None:
    path = rebuild(archive, tmp_path / "t.zip", drop=["manifest.json", "manifest.dill"])
    _assert_rejected(path, "missing manifest member")


def test_member_listed_but_missing(tmp_path: Path, archive: Path) -> None:
    path = rebuild(archive, tmp_path / "t.zip", drop=["weights.h5"], fix_checksums=False)
    _assert_rejected(path, "'weights.h5'", "missing")


def test_required_member_missing_even_if_unlisted(tmp_path: Path, archive: Path) -> None:
    path = rebuild(archive, tmp_path / "t.zip", drop=["config.json"])
    _assert_rejected(path, "'config.json'", "required member missing")


def test_member_not_in_manifest(tmp_path: Path, archive: Path) -> None:
    path = rebuild(
        archive, tmp_path / "t.zip", replace={"autoencoder/extra.bin": b"x"}, fix_checksums=False
    )
    _assert_rejected(path, "'autoencoder/extra.bin'", "not listed")


@pytest.mark.parametrize("version", [1, 3, "2", None, 2.5])
def test_unknown_format_version(tmp_path: Path, archive: Path, version: object) -> None:
    manifest = json.loads(read_members(archive)["manifest.json"])
    manifest["format_version"] = version
    path = rebuild(
        archive, tmp_path / "t.zip", replace={"manifest.json": json.dumps(manifest).encode()}
    )
    _assert_rejected(path, "format_version", "reads format versions [2]")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("format", "other", "'format'"),
        ("backend", 3, "'backend'"),
        ("N", "64", "'N'"),
        ("members", {"weights.h5": {"sha256": "x", "size": 1}}, "'weights.h5'"),
        ("members", {"../x": {"sha256": "0" * 64, "size": 1}}, "'..'"),
    ],
)
def test_malformed_manifest(
    tmp_path: Path, archive: Path, field: str, value: object, match: str
) -> None:
    manifest = json.loads(read_members(archive)["manifest.json"])
    manifest[field] = value
    path = rebuild(
        archive,
        tmp_path / "t.zip",
        replace={"manifest.json": json.dumps(manifest).encode()},
        fix_checksums=False,
    )
    _assert_rejected(path, match)


def test_manifest_and_params_disagree(tmp_path: Path, archive: Path) -> None:
    manifest = json.loads(read_members(archive)["manifest.json"])
    manifest["gridsize"] = 1
    path = rebuild(
        archive,
        tmp_path / "t.zip",
        replace={"manifest.json": json.dumps(manifest).encode()},
        fix_checksums=False,
    )
    _assert_rejected(path, "'params.json'", "manifest.json says")


def test_encrypted_member(tmp_path: Path, archive: Path) -> None:
    data = patch_central_directory(archive.read_bytes(), "weights.h5", flag_bits=1)
    path = tmp_path / "enc.zip"
    path.write_bytes(data)
    _assert_rejected(path, "'weights.h5'", "encrypted")


def _h5_bytes(build) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        build(h5)
    return buffer.getvalue()


def _external_storage(h5: h5py.File, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    h5.create_dataset("a", shape=(4,), dtype=np.float32, external=[(str(secret), 0, 16)])


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda h5, tmp: h5.__setitem__("a", h5py.SoftLink("/b")), "soft link"),
        (
            lambda h5, tmp: h5.__setitem__("a", h5py.ExternalLink(str(tmp / "x.h5"), "/")),
            "external link",
        ),
        (_external_storage, "outside the file"),
        (lambda h5, tmp: h5.create_dataset("a", data=np.array([b"x"])), "non-numeric"),
        (
            lambda h5, tmp: h5.create_dataset("a b", data=np.zeros(2)),
            "invalid canonical weight name",
        ),
        (lambda h5, tmp: h5.create_dataset("a", shape=(10**6,), dtype="f8"), "max_member_size"),
        (lambda h5, tmp: None, None),
    ],
)
def test_hostile_weights_h5(tmp_path: Path, archive: Path, build, match: str | None) -> None:
    if match is None:  # not HDF5 at all, but with a valid checksum
        data, match = b"garbage" * 10, "not a readable HDF5"
    else:
        data = _h5_bytes(lambda h5: build(h5, tmp_path))
    path = rebuild(archive, tmp_path / "t.zip", replace={"weights.h5": data})
    _assert_rejected(path, "'weights.h5'", match, limits=BundleLimits(max_member_size=MiB))


@pytest.mark.parametrize(
    ("build", "stored"),
    [
        # 1.5 GiB declared, never written: a few KB of file (issue 17: 1.86 GiB, MemoryError).
        (lambda h5: h5.create_dataset("a", shape=(3 * 2**28,), dtype="u1"), "found 0 stored"),
        # 64 MiB of zeros, gzip-compressed some 1,000-fold: beyond max_ratio (200).
        (
            lambda h5: h5.create_dataset(
                "a", data=np.zeros(2**26, np.uint8), chunks=(2**20,), compression="gzip"
            ),
            "(compressed)",
        ),
    ],
)
def test_weights_declaring_more_than_they_store(
    tmp_path: Path, archive: Path, build, stored: str
) -> None:
    data = _h5_bytes(build)
    assert len(data) < MiB
    path = rebuild(archive, tmp_path / "t.zip", replace={"weights.h5": data})
    _assert_rejected(path, "'weights.h5'", "dataset 'a' declares", stored, "unwritten or forged")


def test_extracted_layout_refuses_symlinks(tmp_path: Path, archive: Path) -> None:
    layout = tmp_path / "layout"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(layout)
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", layout / "autoencoder" / "model.keras")
    _assert_rejected(layout, "'autoencoder/model.keras'", "symbolic link")


def test_extracted_layout_checks_checksums(tmp_path: Path, archive: Path) -> None:
    layout = tmp_path / "layout"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(layout)
    (layout / "config.json").write_text("{}")
    _assert_rejected(layout, "'config.json'")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_members"):
        BundleLimits(max_members=0)
