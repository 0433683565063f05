"""Helpers shared by the tests: sample model content and hand-built (possibly hostile) archives."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def sample_weights() -> dict[str, np.ndarray]:
    """Canonical weights with float32 and complex64 tensors of several shapes."""
    rng = np.random.default_rng(0)
    return {
        "encoder/block0/conv0/kernel": rng.standard_normal((3, 3, 1, 8)).astype(np.float32),
        "encoder/block0/conv0/bias": np.zeros(8, np.float32),
        "decoder_amp/head/kernel": rng.standard_normal((3, 3, 8, 1)).astype(np.float32),
        "physics/log_intensity_scale": np.asarray(3.5, np.float32),
        "physics/probe": (
            rng.standard_normal((16, 16)) + 1j * rng.standard_normal((16, 16))
        ).astype(np.complex64),
    }


def sample_params() -> dict[str, Any]:
    """A flat legacy params snapshot as the workflow passes it (numpy scalars, the probe array)."""
    return {
        "N": 64,
        "gridsize": 2,
        "intensity_scale": np.float64(1234.5),
        "offset": 4,
        "nphotons": 1e9,
        "probe.big": True,
        "label": "run-1",
        "outer_offset_train": None,
        "probe": np.ones((16, 16), np.complex64),
    }


def write_zip(path: Path, members: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    """Write a ZIP with exactly these members (names unchecked, duplicates allowed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def read_members(path: Path) -> dict[str, bytes]:
    """All members of a ZIP as ``{name: bytes}``."""
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rebuild(
    source: Path,
    target: Path,
    *,
    replace: Mapping[str, bytes] | None = None,
    drop: Iterable[str] = (),
    fix_checksums: bool = True,
) -> Path:
    """Copy an archive with members replaced or dropped; optionally re-sign manifest.json to match."""
    members = read_members(source)
    for name in drop:
        members.pop(name)
    members.update(replace or {})
    if fix_checksums and "manifest.json" in members:
        manifest = json.loads(members["manifest.json"])
        manifest["members"] = {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in members.items()
            if name != "manifest.json"
        }
        members["manifest.json"] = json.dumps(manifest).encode()
    return write_zip(target, members.items())


_CENTRAL = b"PK\x01\x02"
_CENTRAL_FIELDS = {"flag_bits": (8, "<H"), "file_size": (24, "<I")}


def patch_central_directory(data: bytes, name: str, **fields: int) -> bytes:
    """Rewrite fields (``flag_bits``, ``file_size``) of ``name``'s central-directory entry only."""
    buf = bytearray(data)
    start = 0
    while (start := buf.find(_CENTRAL, start)) >= 0:
        (name_len,) = struct.unpack_from("<H", buf, start + 28)
        if buf[start + 46 : start + 46 + name_len] == name.encode():
            for field, value in fields.items():
                offset, fmt = _CENTRAL_FIELDS[field]
                struct.pack_into(fmt, buf, start + offset, value)
            return bytes(buf)
        start += 4
    raise KeyError(name)
