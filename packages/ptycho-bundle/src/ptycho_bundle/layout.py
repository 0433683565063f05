"""Member names of the archive layout, name validation, and where an archive is written."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ptycho_api.errors import BundleError

__all__ = [
    "ARCHIVE_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "LEGACY_FORMAT_VERSION",
    "BACKENDS",
    "LEGACY_VERSION_STRINGS",
    "MODELS",
    "MANIFEST_JSON",
    "PARAMS_JSON",
    "CONFIG_JSON",
    "WEIGHTS_H5",
    "HISTORY_JSON",
    "MANIFEST_DILL",
    "PARAMS_DILL",
    "CUSTOM_OBJECTS_DILL",
    "check_member_name",
    "check_weight_name",
    "check_native_name",
    "archive_path_for",
]

ARCHIVE_NAME = "wts.h5.zip"
FORMAT = "ptycho-bundle"
FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = (2,)
LEGACY_FORMAT_VERSION = 1
"""What ``Bundle.format_version`` reports for an original PtychoPINN archive (no manifest.json)."""

BACKENDS = ("tensorflow", "pytorch")
LEGACY_VERSION_STRINGS = {"tensorflow": "1.0", "pytorch": "2.0-pytorch"}
"""The ``version`` the original tools write into ``manifest.dill`` for each backend."""

MODELS = ("autoencoder", "diffraction_to_obj")

MANIFEST_JSON = "manifest.json"
PARAMS_JSON = "params.json"
CONFIG_JSON = "config.json"
WEIGHTS_H5 = "weights.h5"
HISTORY_JSON = "history.json"
MANIFEST_DILL = "manifest.dill"
PARAMS_DILL = "params.dill"
CUSTOM_OBJECTS_DILL = "custom_objects.dill"

_DRIVE = re.compile(r"^[A-Za-z]:")
_COMPONENT = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check_member_name(name: str, where: str) -> None:
    """Raise ``BundleError`` unless ``name`` is a safe relative ZIP member name (bundle.md part 2)."""
    reason = None
    if not name:
        reason = "empty name"
    elif "\x00" in name:
        reason = "NUL character in the name"
    elif name.startswith("/"):
        reason = "absolute path"
    elif "\\" in name:
        reason = "backslash in the name"
    elif _DRIVE.match(name):
        reason = "drive letter"
    elif ".." in name.split("/"):
        reason = "'..' path component"
    if reason is not None:
        raise BundleError(
            f"{where}: member {name!r} rejected: {reason} "
            "(member names must be relative paths with '/' separators, no '..', no drive letters)"
        )


def _check_component(part: str) -> bool:
    return bool(_COMPONENT.match(part)) and part not in (".", "..")


def check_weight_name(name: object, where: str) -> str:
    """Return ``name`` if it is a valid canonical weight name (``a/b/c``, each part ``[A-Za-z0-9_.-]``)."""
    if (
        not isinstance(name, str)
        or not name
        or not all(_check_component(p) for p in name.split("/"))
    ):
        raise BundleError(
            f"{where}: invalid canonical weight name {name!r} (expected slash-separated parts of "
            "letters, digits, '_', '.', '-', no empty parts, no '.' or '..')"
        )
    return name


def check_native_name(model: object, filename: object) -> str:
    """Return the member name ``<model>/<filename>`` of a native artifact after validating both parts."""
    if model not in MODELS:
        raise BundleError(f"native: unknown model {model!r}; expected one of {list(MODELS)}")
    if (
        not isinstance(filename, str)
        or not _check_component(filename)
        or filename in (PARAMS_DILL, CUSTOM_OBJECTS_DILL)
    ):
        raise BundleError(
            f"native[{model!r}]: invalid artifact file name {filename!r} (expected one file name of "
            f"letters, digits, '_', '.', '-', not {PARAMS_DILL!r} or {CUSTOM_OBJECTS_DILL!r})"
        )
    return f"{model}/{filename}"


def archive_path_for(target: str | os.PathLike[str]) -> Path:
    """Archive file for a save target: ``x.zip`` as is, legacy base ``x.h5`` -> ``x.h5.zip``, a directory -> ``<dir>/wts.h5.zip``."""
    path = Path(target)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return path
    if suffix == ".h5":
        return path.with_name(path.name + ".zip")
    if path.exists() and not path.is_dir():
        raise BundleError(
            f"{path}: cannot write a model archive here: it is an existing file that is neither a "
            "directory, a '.zip' path nor a legacy '<dir>/wts.h5' base path"
        )
    return path / ARCHIVE_NAME
