"""Property test: random and mutated archives make load_bundle and inspect raise BundleError, nothing else."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tempfile
import zipfile
from pathlib import Path

import dill
import numpy as np
import pytest
from bundle_helpers import read_members
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptycho_bundle import BundleError, BundleLimits, inspect, load_bundle, save_bundle


def _corpus() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Members of a small valid format-2 archive and of a plain legacy archive."""
    with tempfile.TemporaryDirectory() as tmp:
        path = save_bundle(
            Path(tmp),
            backend="pytorch",
            config={"model": {"N": 64, "gridsize": 1}},
            params={"N": 64, "gridsize": 1, "intensity_scale": 2.5, "label": "fuzz"},
            weights={
                "encoder/conv/kernel": np.arange(18, dtype=np.float32).reshape(3, 3, 1, 2),
                "physics/probe": np.full((4, 4), 1 + 2j, np.complex64),
            },
            history={"loss": [1.0, 0.5]},
            native={"diffraction_to_obj": {"model.pth": b"\x80\x02}q\x00."}},
        )
        v2 = read_members(path)
    params = {"N": 64, "gridsize": 1, "intensity_scale": np.float32(2.5)}
    legacy = {
        "manifest.dill": pickle.dumps(
            {"models": ["autoencoder", "diffraction_to_obj"], "version": "1.0"}
        ),
        "diffraction_to_obj/params.dill": dill.dumps(
            {**params, "probe": np.ones((2, 3), np.complex64)}
        ),
        "autoencoder/params.dill": pickle.dumps(params, protocol=2),
        "diffraction_to_obj/model.keras": b"PK\x05\x06" + bytes(18),
    }
    return v2, legacy


V2, LEGACY = _corpus()
KNOWN_NAMES = sorted(V2.keys() | LEGACY.keys())
KNOWN_CONTENT = sorted(V2.values()) + sorted(LEGACY.values())


def _zip(members: list[tuple[str, bytes]], compression: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def _resign(members: dict[str, bytes]) -> dict[str, bytes]:
    """Make manifest.json's checksums match the (mutated) members, so the parsers behind it get fuzzed."""
    try:
        manifest = json.loads(members["manifest.json"])
        manifest["members"] = {
            n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
            for n, d in members.items()
            if n != "manifest.json"
        }
    except (KeyError, ValueError, TypeError):
        return members
    return {**members, "manifest.json": json.dumps(manifest).encode()}


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        if not buf:
            break
        kind = draw(st.sampled_from(["flip", "delete", "insert"]))
        at = draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            del buf[at : at + draw(st.integers(1, 64))]
        else:
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
    if draw(st.booleans()):
        buf = buf[: draw(st.integers(0, len(buf)))]
    return bytes(buf)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _member_content(draw: st.DrawFn, name: str, base: dict[str, bytes]) -> bytes:
    original = base.get(name, b"")
    choice = draw(st.sampled_from(["keep", "mutate", "random", "other", "json"]))
    if choice == "keep":
        return original
    if choice == "mutate":
        return draw(_mutated(original))
    if choice == "random":
        return draw(st.binary(max_size=256))
    if choice == "json" and name == "manifest.json":
        manifest = json.loads(original) if original else {}
        manifest[draw(st.sampled_from(sorted(manifest) or ["format"]))] = draw(json_values)
        return json.dumps(manifest).encode()
    return draw(st.sampled_from(KNOWN_CONTENT))


@st.composite
def _variant(draw: st.DrawFn) -> bytes:
    """A valid archive with a few members mutated, replaced, added or dropped, usually re-signed."""
    base = draw(st.sampled_from([V2, V2, LEGACY]))
    members = dict(base)
    for name in draw(st.lists(st.sampled_from(sorted(base)), min_size=1, max_size=3, unique=True)):
        members[name] = draw(_member_content(name, base))
    for name in draw(
        st.lists(st.sampled_from(KNOWN_NAMES) | st.text(min_size=1, max_size=12), max_size=2)
    ):
        members[name] = draw(_member_content(name, base))
    for name in draw(st.lists(st.sampled_from(sorted(members)), max_size=2, unique=True)):
        members.pop(name)
    if draw(st.integers(0, 4)):
        members = _resign(members)
    compression = draw(
        st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
    )
    return _zip(list(members.items()), compression)


@st.composite
def _flipped_member(draw: st.DrawFn) -> bytes:
    """A re-signed archive whose weights.h5 or a pickle has a few bytes changed in place (parser fuzzing)."""
    base, name = draw(
        st.sampled_from(
            [
                (V2, "weights.h5"),
                (V2, "params.json"),
                (LEGACY, "diffraction_to_obj/params.dill"),
                (LEGACY, "autoencoder/params.dill"),
            ]
        )
    )
    buf = bytearray(base[name])
    for _ in range(draw(st.integers(1, 4))):
        buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
    members = _resign({**base, name: bytes(buf)})
    return _zip(list(members.items()), zipfile.ZIP_STORED)


archives = st.one_of(
    st.binary(max_size=512),
    _mutated(_zip(list(V2.items()), zipfile.ZIP_DEFLATED)),
    _mutated(_zip(list(LEGACY.items()), zipfile.ZIP_STORED)),
    _variant(),
    _flipped_member(),
)
limits = st.sampled_from(
    [
        None,
        None,
        BundleLimits(
            max_members=16,
            max_member_size=64 * 1024,
            max_total_size=96 * 1024,
            ratio_min_size=1024,
            max_ratio=8,
        ),
    ]
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "wts.h5.zip"


@settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=archives, limit=limits)
def test_only_bundle_errors(target: Path, data: bytes, limit: BundleLimits | None) -> None:
    target.write_bytes(data)
    for reader in (load_bundle, inspect):
        try:
            reader(target, limits=limit)
        except BundleError:
            pass
