"""What the CLI may hide of TensorFlow's output unless ``-v`` (entry point ``ptycho.log_filters``).

Plain data only: this module imports no framework, so a front end reads it before TensorFlow is
imported (TensorFlow writes its C++ start-up notes to file descriptor 2 while it is imported).
"""

from __future__ import annotations

from ptycho_api.backend import LogFilters

__all__ = ["LOG_FILTERS"]

LOG_FILTERS = LogFilters(
    # absl-style INFO/WARNING lines ("I0000 00:00:1795976883.762377    6478 port.cc:153] ...",
    # oneDNN notes, "could not find cuda drivers") and absl's notice that logging is not
    # initialised yet. Errors ("E0000 ...") are kept.
    native_lines=(
        rb"[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\]",
        rb"WARNING: All log messages before absl::InitializeLog\(\) is called",
    ),
    # Deprecation notices meant for developers of TensorFlow and Keras code.
    warning_modules=("tensorflow", "keras"),
    # Only errors from the C++ runtime: its start-up chatter drowns the output of a CPU run.
    environment=(("TF_CPP_MIN_LOG_LEVEL", "3"),),
)
"""The TensorFlow backend's log filters (also ``ptycho_tf.backend.Backend.log_filters``)."""
