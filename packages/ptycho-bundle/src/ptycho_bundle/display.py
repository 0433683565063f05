"""Bounded, escaped text of untrusted values, for error messages and ``ptycho inspect``."""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["summary", "printable"]

_INT_DIGITS = 40
"""Longest integer (decimal digits) written out in full; Python refuses to write ints over 4300 digits."""


class _BoundedRepr(reprlib.Repr):
    """``reprlib.Repr`` that also bounds bytes, bytearray and huge integers before converting them."""

    def __init__(self) -> None:
        super().__init__()
        # Three levels and six items per container: enough to recognise a value in a message,
        # and at most about 6**3 elements visited even for a structure that shares references.
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxarray = self.maxdict = 6
        self.maxset = self.maxfrozenset = self.maxdeque = 6
        self.maxstring = self.maxother = 60
        self.maxlong = _INT_DIGITS

    def repr_int(self, x: int, level: int) -> str:
        """Small integers in full, others by their size (``repr`` of a huge int raises)."""
        if x.bit_length() <= _INT_DIGITS * 3:  # under about 40 decimal digits
            return super().repr_int(x, level)
        return f"<int of {x.bit_length()} bits>"

    def repr_bytes(self, x: bytes, level: int) -> str:
        """The first ``maxstring`` bytes; the rest is never converted."""
        return repr(x[: self.maxstring]) + ("..." if len(x) > self.maxstring else "")

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        """The first ``maxstring`` bytes of a bytearray."""
        return f"bytearray({self.repr_bytes(bytes(x[: self.maxstring + 1]), level)})"


_REPR = _BoundedRepr()


def summary(value: Any, limit: int = 200) -> str:
    """A ``repr``-like, one-line text of ``value`` of at most ``limit`` characters, bounded in time."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that fails must not hide the error being reported
        text = f"<{type(value).__name__}>"
    return printable(text, limit)


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\n``, ``\\u202e``), cut to ``limit`` characters."""
    cut = limit is not None and len(text) > limit
    if limit is not None:
        text = text[:limit]  # escaping only lengthens: what is cut here could never be shown
    if not text.isprintable():
        text = "".join(
            ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
        )
    if limit is not None and (cut or len(text) > limit):
        text = text[: limit - 3] + "..."
    return text
