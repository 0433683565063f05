"""Exception hierarchy shared by every ptycho package.

Messages name the file, field, expected and found values, so callers (and the CLI) can show them
as they are.
"""

from __future__ import annotations

__all__ = [
    "PtychoError",
    "ConfigError",
    "DataError",
    "BackendError",
    "BackendNotInstalledError",
    "BundleError",
    "OutputError",
]


class PtychoError(Exception):
    """Base class of every error raised on purpose by ptycho packages."""


class ConfigError(PtychoError, ValueError):
    """A configuration value or file is invalid (names the field, the value and what is allowed)."""


class DataError(PtychoError, ValueError):
    """Input data violate the NPZ data contract (names the file, key, expected and found)."""


class BackendError(PtychoError):
    """A backend is unknown, fails to import, or cannot perform an operation."""


class BackendNotInstalledError(BackendError):
    """The requested backend (or any backend) is not installed; the message says what to install."""


class BundleError(PtychoError):
    """A model archive is unreadable, corrupt, unsafe or unsupported (names the path and member)."""


class OutputError(PtychoError):
    """An output directory or file cannot be created or written (names the path and the cause)."""
