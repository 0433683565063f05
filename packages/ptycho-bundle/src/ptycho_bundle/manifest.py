"""The ``manifest.json`` document: building it when writing, validating it when reading."""

from __future__ import annotations

import datetime
import hashlib
import numbers
import platform
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

import ptycho_api
from ptycho_api.errors import BundleError
from ptycho_bundle.layout import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_JSON,
    SUPPORTED_FORMAT_VERSIONS,
    check_member_name,
)

__all__ = ["build_manifest", "validate_manifest", "sha256", "base_versions"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = {
    "backend": str,
    "models": list,
    "created": str,
    "versions": dict,
    "N": numbers.Integral,
    "gridsize": numbers.Integral,
    "intensity_scale": numbers.Real,
    "members": dict,
}


def sha256(data: bytes) -> str:
    """Hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def base_versions() -> dict[str, str]:
    """Versions every archive records: ptycho-api, ptycho-bundle, numpy, python."""
    from ptycho_bundle import __version__

    return {
        "ptycho-api": ptycho_api.__version__,
        "ptycho-bundle": __version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def build_manifest(
    *,
    backend: str,
    models: list[str],
    versions: Mapping[str, str],
    required: tuple[int, int, float],
    members: Mapping[str, bytes],
) -> dict[str, Any]:
    """Manifest of format version 2 for the given member bytes (``members`` excludes manifest.json)."""
    n, gridsize, intensity_scale = required
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backend": backend,
        "models": list(models),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": dict(versions),
        "N": n,
        "gridsize": gridsize,
        "intensity_scale": intensity_scale,
        "members": {
            name: {"sha256": sha256(data), "size": len(data)} for name, data in members.items()
        },
    }


def validate_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """Return ``manifest`` if it is a supported, well-formed format-2 manifest; ``BundleError`` otherwise."""
    at = f"{where}: member {MANIFEST_JSON!r}"
    if not isinstance(manifest, dict):
        raise BundleError(f"{at}: expected a JSON object; found {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{at}: 'format' must be {FORMAT!r}; found {manifest.get('format')!r}")
    version = manifest.get("format_version")
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or version not in SUPPORTED_FORMAT_VERSIONS
    ):
        raise BundleError(
            f"{at}: unsupported format_version {version!r}; this ptycho-bundle reads format versions "
            f"{list(SUPPORTED_FORMAT_VERSIONS)} (and legacy archives without {MANIFEST_JSON}); "
            "a newer archive needs a newer ptycho-bundle"
        )
    for field, kind in _FIELDS.items():
        value = manifest.get(field)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise BundleError(f"{at}: field {field!r} must be {kind.__name__}; found {value!r}")
    if not all(isinstance(m, str) and m and "/" not in m for m in manifest["models"]):
        raise BundleError(
            f"{at}: 'models' must be a list of model names; found {manifest['models']!r}"
        )
    for name, entry in manifest["members"].items():
        check_member_name(name, at)
        if name == MANIFEST_JSON:
            raise BundleError(f"{at}: lists itself under 'members'")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not _SHA256.match(entry["sha256"])
            or isinstance(entry.get("size"), bool)
            or not isinstance(entry.get("size"), int)
            or entry["size"] < 0
        ):
            raise BundleError(
                f"{at}: entry for member {name!r} must be {{'sha256': 64 hex digits, 'size': bytes}}; found {entry!r}"
            )
    return manifest
