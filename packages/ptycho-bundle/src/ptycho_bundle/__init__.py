"""The ``wts.h5.zip`` model archive: layout, manifest, canonical weights, safe reading, atomic writing.

Importing this package never imports a deep-learning framework.
"""

from __future__ import annotations

from ptycho_api.errors import BundleError
from ptycho_bundle.inspection import format_inspection, inspect
from ptycho_bundle.layout import (
    ARCHIVE_NAME,
    FORMAT_VERSION,
    LEGACY_FORMAT_VERSION,
    MODELS,
    SUPPORTED_FORMAT_VERSIONS,
)
from ptycho_bundle.limits import DEFAULT_LIMITS, BundleLimits
from ptycho_bundle.model_archive import (
    ModelSpec,
    legacy_params,
    read_model_archive,
    write_model_archive,
)
from ptycho_bundle.reader import Bundle, load_bundle
from ptycho_bundle.writer import save_bundle

__version__ = "0.2.0"

__all__ = [
    "__version__",
    "ARCHIVE_NAME",
    "FORMAT_VERSION",
    "LEGACY_FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "MODELS",
    "Bundle",
    "BundleError",
    "BundleLimits",
    "DEFAULT_LIMITS",
    "save_bundle",
    "load_bundle",
    "inspect",
    "format_inspection",
    "ModelSpec",
    "legacy_params",
    "write_model_archive",
    "read_model_archive",
]
