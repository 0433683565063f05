"""Where archive members come from: a ZIP file (or one nested in an outer ZIP) or an extracted directory.

Every source checks its listing against the limits (count, declared sizes, compression ratio) and the
name rules before any member is read, and reads each member with a bound on its size.
"""

from __future__ import annotations

import abc
import contextlib
import io
import lzma
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ptycho_api.errors import BundleError
from ptycho_bundle.layout import ARCHIVE_NAME, MANIFEST_DILL, MANIFEST_JSON, check_member_name
from ptycho_bundle.limits import BundleLimits

__all__ = ["MemberInfo", "Source", "ZipSource", "DirSource", "locate", "open_source"]

# What zipfile and its decompressors raise on corrupt, truncated or unsupported archives.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    IndexError,
    OverflowError,
)
_COMPRESSIONS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}


@dataclass(frozen=True)
class MemberInfo:
    """A member's name, declared uncompressed size and stored size (``None`` in a directory)."""

    name: str
    size: int
    compressed_size: int | None


class Source(abc.ABC):
    """Members of an archive, validated against the limits; read with ``read(name)``."""

    path: Path
    location: str
    kind: str
    members: dict[str, MemberInfo]

    @abc.abstractmethod
    def read(self, name: str) -> bytes:
        """Bytes of member ``name``, never more than its declared size."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the underlying file."""

    def _fail(self, name: str, message: str) -> BundleError:
        return BundleError(f"{self.location}: member {name!r}: {message}")

    def _check_size(self, name: str, size: int, limits: BundleLimits) -> None:
        if size > limits.max_member_size:
            raise self._fail(
                name,
                f"declared size {size} bytes exceeds the limit max_member_size={limits.max_member_size}",
            )

    def _check_total(self, limits: BundleLimits) -> None:
        total = 0
        for info in self.members.values():
            total += info.size
            if total > limits.max_total_size:
                raise self._fail(
                    info.name,
                    f"total declared size reaches {total} bytes, over the limit "
                    f"max_total_size={limits.max_total_size}",
                )


class ZipSource(Source):
    """Members of a ZIP archive; the listing comes from the central directory, nothing is extracted."""

    def __init__(
        self, file: IO[bytes], path: Path, limits: BundleLimits, inner: str | None = None
    ) -> None:
        self.path = path
        self.location = f"{path}!{inner}" if inner else str(path)
        self.kind = "zip in zip" if inner else "zip"
        try:
            self._zip = zipfile.ZipFile(file)
            infos = self._zip.infolist()
        except _ZIP_ERRORS as exc:
            raise BundleError(
                f"{self.location}: not a readable ZIP archive ({type(exc).__name__}: {exc})"
            ) from None
        try:
            self._check_listing(infos, limits)
        except BundleError:
            self._zip.close()
            raise
        self._infos = {info.filename: info for info in infos}

    def _check_listing(self, infos: list[zipfile.ZipInfo], limits: BundleLimits) -> None:
        if len(infos) > limits.max_members:
            raise BundleError(
                f"{self.location}: {len(infos)} members, over the limit max_members={limits.max_members}"
            )
        members: dict[str, MemberInfo] = {}
        for info in infos:
            name = info.filename
            check_member_name(name, self.location)
            if name in members:
                raise self._fail(
                    name, "duplicate member name (the archive lists it more than once)"
                )
            if info.flag_bits & 0x1:
                raise self._fail(name, "encrypted members are not supported")
            if info.compress_type not in _COMPRESSIONS:
                raise self._fail(
                    name,
                    f"unsupported compression method {info.compress_type} (supported: {sorted(_COMPRESSIONS.values())})",
                )
            self._check_size(name, info.file_size, limits)
            if info.file_size > limits.ratio_min_size:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > limits.max_ratio:
                    raise self._fail(
                        name,
                        f"suspicious compression ratio {ratio:.0f}:1 ({info.file_size} bytes from "
                        f"{info.compress_size}), over the limit max_ratio={limits.max_ratio:g} for members "
                        f"over ratio_min_size={limits.ratio_min_size} bytes",
                    )
            members[name] = MemberInfo(name, info.file_size, info.compress_size)
        self.members = members
        self._check_total(limits)

    def read(self, name: str) -> bytes:
        """Bytes of member ``name`` (decompressed, CRC-checked, at most its declared size)."""
        info = self._infos[name]
        try:
            with self._zip.open(info) as fh:
                data = fh.read(info.file_size + 1)
        except _ZIP_ERRORS as exc:
            raise self._fail(name, f"cannot be read ({type(exc).__name__}: {exc})") from None
        if len(data) != info.file_size:
            raise self._fail(name, f"holds {len(data)} bytes but declares {info.file_size}")
        return data

    def close(self) -> None:
        """Close the ZIP file."""
        self._zip.close()


class DirSource(Source):
    """Members of an extracted archive layout in a directory; symbolic links and special files are refused."""

    def __init__(self, root: Path, limits: BundleLimits) -> None:
        self.path = root
        self.location = str(root)
        self.kind = "directory"
        self._root = root
        try:
            self.members = self._list(limits)
        except OSError as exc:
            raise BundleError(f"{root}: cannot list the extracted archive ({exc})") from None
        self._check_total(limits)

    def close(self) -> None:
        """Nothing to release: files are opened per read."""

    def _list(self, limits: BundleLimits) -> dict[str, MemberInfo]:
        members: dict[str, MemberInfo] = {}
        for current, dirs, files in os.walk(self._root, followlinks=False):
            for entry in sorted(dirs) + sorted(files):
                path = Path(current, entry)
                name = path.relative_to(self._root).as_posix()
                check_member_name(name, self.location)
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode):
                    raise self._fail(name, "symbolic links are not allowed in an extracted archive")
                if stat.S_ISDIR(mode):
                    continue
                if not stat.S_ISREG(mode):
                    raise self._fail(name, "not a regular file")
                size = path.lstat().st_size
                self._check_size(name, size, limits)
                members[name] = MemberInfo(name, size, None)
                if len(members) > limits.max_members:
                    raise BundleError(
                        f"{self.location}: more than {limits.max_members} files, over the limit max_members"
                    )
        return members

    def read(self, name: str) -> bytes:
        """Bytes of file ``name`` below the root (symbolic links refused, at most its listed size)."""
        size = self.members[name].size
        try:
            fd = os.open(self._root / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as fh:
                data = fh.read(size + 1)
        except OSError as exc:
            raise self._fail(name, f"cannot be read ({exc.strerror or exc})") from None
        if len(data) != size:
            raise self._fail(name, f"changed size while reading ({len(data)} bytes, listed {size})")
        return data


def _is_layout(directory: Path) -> bool:
    return (directory / MANIFEST_JSON).is_file() or (directory / MANIFEST_DILL).is_file()


def locate(path: str | os.PathLike[str]) -> Path:
    """The archive file or extracted-layout directory that ``path`` designates (bundle.md part 3)."""
    p = Path(path)
    try:
        return _locate(p)
    except OSError as exc:
        raise BundleError(f"{p}: cannot look for a model archive here ({exc})") from None


def _locate(p: Path) -> Path:
    if p.is_dir():
        if (p / ARCHIVE_NAME).is_file():
            return p / ARCHIVE_NAME
        if _is_layout(p):
            return p
        candidates = []
        for child in sorted(c for c in p.iterdir() if c.is_dir()):
            if (child / ARCHIVE_NAME).is_file():
                candidates.append(child / ARCHIVE_NAME)
            elif _is_layout(child):
                candidates.append(child)
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise BundleError(
                f"{p}: holds several model archives {[str(c) for c in candidates]}; pass one of them"
            )
        raise BundleError(
            f"{p}: no model archive found (expected {ARCHIVE_NAME}, an extracted archive with "
            f"{MANIFEST_JSON} or {MANIFEST_DILL}, or either of them one directory level down)"
        )
    if p.is_file():
        return p
    legacy = p.with_name(p.name + ".zip")
    if p.suffix.lower() == ".h5" and legacy.is_file():
        return legacy
    if p.exists():
        raise BundleError(
            f"{p}: expected a model archive (a regular file) or a directory; found something "
            "else (a pipe, socket or device)"
        )
    raise BundleError(f"{p}: no such model archive or directory")


def _nested_archive(source: ZipSource) -> str | None:
    names = [n for n in source.members if PurePosixPath(n).name == ARCHIVE_NAME]
    if MANIFEST_JSON in source.members or MANIFEST_DILL in source.members or len(names) != 1:
        return None
    return names[0]


@contextlib.contextmanager
def open_source(path: str | os.PathLike[str], limits: BundleLimits) -> Iterator[Source]:
    """Open the archive at ``path`` (see ``locate``); an outer ZIP holding one ``wts.h5.zip`` is opened through."""
    target = locate(path)
    if target.is_dir():
        yield DirSource(target, limits)
        return
    try:
        fh = open(target, "rb")
    except OSError as exc:
        raise BundleError(f"{target}: cannot be opened ({exc.strerror or exc})") from None
    with fh:
        source = ZipSource(fh, target, limits)
        try:
            inner = _nested_archive(source)
            if inner is None:
                yield source
                return
            data = source.read(inner)
        finally:
            source.close()
        nested = ZipSource(io.BytesIO(data), target, limits, inner)
        try:
            yield nested
        finally:
            nested.close()
