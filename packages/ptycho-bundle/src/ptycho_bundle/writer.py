"""Writing a format-2 archive atomically (bundle.md part 1)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ptycho_api.atomic import atomic_path
from ptycho_api.config import normalize_backend_name
from ptycho_api.errors import BundleError
from ptycho_bundle.layout import (
    BACKENDS,
    CONFIG_JSON,
    HISTORY_JSON,
    LEGACY_VERSION_STRINGS,
    MANIFEST_DILL,
    MANIFEST_JSON,
    MODELS,
    PARAMS_DILL,
    PARAMS_JSON,
    WEIGHTS_H5,
    archive_path_for,
    check_native_name,
)
from ptycho_bundle.manifest import base_versions, build_manifest
from ptycho_bundle.snapshot import config_document, params_snapshot, required_params, to_json_safe
from ptycho_bundle.weights import weights_to_h5

__all__ = ["save_bundle"]

logger = logging.getLogger(__name__)

_BINARY_SUFFIXES = (".h5", ".keras", ".pth", ".pt")
"""Members stored uncompressed: already dense, and deflating zero-filled tensors could trip the ratio limit."""


def _json_bytes(value: Any, *, allow_nan: bool = False) -> bytes:
    return json.dumps(value, indent=2, sort_keys=False, allow_nan=allow_nan).encode("utf-8")


def _native_members(native: Mapping[str, Mapping[str, bytes]] | None) -> dict[str, bytes]:
    if native is None:
        return {}
    if not isinstance(native, Mapping):
        raise BundleError(
            f"native: expected {{model: {{file name: bytes}}}}; found {type(native).__name__}"
        )
    members: dict[str, bytes] = {}
    for model, files in native.items():
        if not isinstance(files, Mapping):
            raise BundleError(
                f"native[{model!r}]: expected {{file name: bytes}}; found {type(files).__name__}"
            )
        for filename, data in files.items():
            name = check_native_name(model, filename)
            if not isinstance(data, bytes | bytearray | memoryview):
                raise BundleError(
                    f"native[{model!r}][{filename!r}]: expected bytes; found {type(data).__name__}"
                )
            members[name] = bytes(data)
    return members


def _check_backend(backend: object) -> str:
    name = normalize_backend_name(backend) if isinstance(backend, str) else backend
    if name not in BACKENDS:
        raise BundleError(f"backend: expected one of {list(BACKENDS)}; found {backend!r}")
    return name


def _write_member(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    compression = zipfile.ZIP_STORED if name.endswith(_BINARY_SUFFIXES) else zipfile.ZIP_DEFLATED
    archive.writestr(name, data, compress_type=compression)


def _members(
    backend: str,
    config: Any,
    params: Mapping[str, Any],
    weights: Mapping[str, Any],
    history: Any,
    native: Mapping[str, Mapping[str, bytes]] | None,
    versions: Mapping[str, str] | None,
) -> dict[str, bytes]:
    """Every member's bytes, ``manifest.json`` first, after validating and converting the inputs."""
    backend = _check_backend(backend)
    snapshot = params_snapshot(params)
    all_versions = {**base_versions(), **{str(k): str(v) for k, v in (versions or {}).items()}}

    members: dict[str, bytes] = {
        PARAMS_JSON: _json_bytes(snapshot),
        CONFIG_JSON: _json_bytes(config_document(config)),
        WEIGHTS_H5: weights_to_h5(weights, backend=backend),
    }
    if history is not None:
        members[HISTORY_JSON] = _json_bytes(
            to_json_safe(history, "history", allow_nan=True), allow_nan=True
        )
    members[MANIFEST_DILL] = pickle.dumps(
        {"models": list(MODELS), "version": LEGACY_VERSION_STRINGS[backend], "backend": backend},
        protocol=4,
    )
    params_dill = pickle.dumps(snapshot, protocol=4)
    native_members = _native_members(native)
    for model in MODELS:
        members[f"{model}/{PARAMS_DILL}"] = params_dill
        members.update({k: v for k, v in native_members.items() if k.startswith(f"{model}/")})

    manifest = build_manifest(
        backend=backend,
        models=list(MODELS),
        versions=all_versions,
        required=required_params(snapshot, "params"),
        members=members,
    )
    return {MANIFEST_JSON: _json_bytes(manifest), **members}


def save_bundle(
    target: str | os.PathLike[str],
    *,
    backend: str,
    config: Any,
    params: Mapping[str, Any],
    weights: Mapping[str, Any],
    history: Any = None,
    native: Mapping[str, Mapping[str, bytes]] | None = None,
    versions: Mapping[str, str] | None = None,
) -> Path:
    """Write a format-2 ``wts.h5.zip`` at ``target`` (directory, ``.zip`` path or legacy ``<dir>/wts.h5``); returns its path."""
    path = archive_path_for(target)
    try:
        members = _members(backend, config, params, weights, history, native, versions)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from None
    try:
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
            for name, data in members.items():
                _write_member(archive, name, data)
    except OSError as exc:
        raise BundleError(f"{path}: cannot write the archive ({exc})") from exc
    logger.info("wrote model archive %s (%d members)", path, len(members))
    return path
