"""Small files that declare or hold gigabytes, under a 2 GiB address-space limit (issue 17).

Each case runs the real ``ptycho`` command in a child with ``RLIMIT_AS`` = 2 GiB and a 60 s
timeout (the contract: no input file of up to 50 MB makes a command exceed either before its
exit-2 message). Before these checks, every case below ended in ``MemoryError`` (exit 1, "an
unexpected error") because the declared sizes were within the 8 GiB load budget.

- a 2.3 MB NPZ whose deflated member really holds 2.2 GiB of zeros (a legitimate zip: the
  budget passes it, the allocation fails under the limit);
- an NPZ whose zip directory was edited to declare 1,000 times what its stored bytes can hold
  (deflate expands at most 1,032-fold; refused before reading);
- an HDF5 scan whose 1.9 GiB dataset was declared but never written (refused from the file's
  storage size, before reading).
"""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_run import SRC

from ptycho_api.simulation import simulate_dataset

ADDRESS_SPACE = 2 * 1024**3
"""The contract's 2 GiB: numpy, scipy and matplotlib load in about 0.6 GiB of it."""
TIMEOUT_S = 60
"""The contract's 60 s; each refusal takes a few seconds (most of it interpreter start)."""
ZERO_PATTERNS = (2200, 512, 512)
"""uint32 counts: 2.15 GiB, more than the whole address space, within the 8 GiB load budget."""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def ptycho_limited(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """``ptycho ARGS`` under the 2 GiB limit: -> (result, seconds)."""
    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ptycho_api.cli import main; sys.exit(main())",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=_limit,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
    )
    return done, time.monotonic() - start


def _one_line_exit_2(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    header = f"{{'descr': '{np.dtype(dtype).str}', 'fortran_order': False, 'shape': {shape}, }}"
    header = header.encode("latin1").ljust(118) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _write_zeros_scan(path: Path) -> None:
    """A contract NPZ whose ``diff3d`` is ``ZERO_PATTERNS`` of zeros, deflated, written in chunks."""
    small = simulate_dataset(4, N=64, seed=0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for key in ("probeGuess", "xcoords", "ycoords", "objectGuess"):
            with zf.open(f"{key}.npy", "w") as fp:
                np.lib.format.write_array(fp, np.asarray(getattr(small, key)))
        with zf.open("diff3d.npy", "w", force_zip64=True) as fp:
            fp.write(_npy_header(ZERO_PATTERNS, "<u4"))
            chunk = bytes(64 * 1024**2)
            remaining = int(np.prod(ZERO_PATTERNS)) * 4
            while remaining:
                fp.write(chunk[: min(remaining, len(chunk))])
                remaining -= min(remaining, len(chunk))


@pytest.fixture(scope="module")
def zeros_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine NPZ of a few MB holding 2.15 GiB of zero patterns (deflated ~1000-fold)."""
    path = tmp_path_factory.mktemp("zeros") / "zeros.npz"
    _write_zeros_scan(path)
    assert path.stat().st_size < 50 * 1024**2
    return path


def _reconstruction(directory: Path) -> Path:
    """A valid ``reconstruction.npz`` for ``ptycho evaluate`` to read first."""
    path = directory / "reconstruction.npz"
    offsets = np.zeros((1, 1, 2, 1))
    np.savez(path, object=np.ones((20, 20), np.complex64), global_offsets=offsets, M=np.int64(20))
    return path


def test_npz_that_inflates_past_the_memory_limit_exits_2(zeros_npz: Path, tmp_path: Path) -> None:
    recon = _reconstruction(tmp_path)
    done, seconds = ptycho_limited(
        "evaluate", "--reconstruction", str(recon), "--ground-truth", str(zeros_npz), cwd=tmp_path
    )
    assert seconds < TIMEOUT_S
    _one_line_exit_2(done, "zeros.npz", "key 'diff3d'", "could not be allocated", "2 GiB")


def test_forged_zip_sizes_are_refused_before_reading(tmp_path: Path) -> None:
    source = tmp_path / "small.npz"
    simulate_dataset(8, N=64, seed=0).to_file(source)
    forged = tmp_path / "forged.npz"
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as zf:
        info = zf.getinfo("diff3d.npy")
    # Edit the central directory's uncompressed size of diff3d.npy to 1,000 x its real size.
    entry = data.rfind(b"PK\x01\x02", 0, data.rfind(b"diff3d.npy") + 1)
    size_at = entry + 24
    (real,) = struct.unpack_from("<I", data, size_at)
    assert real == info.file_size
    struct.pack_into("<I", data, size_at, min(real * 1000, 2**32 - 2))
    forged.write_bytes(bytes(data))
    recon = _reconstruction(tmp_path)
    done, seconds = ptycho_limited(
        "evaluate", "--reconstruction", str(recon), "--ground-truth", str(forged), cwd=tmp_path
    )
    assert seconds < TIMEOUT_S
    _one_line_exit_2(done, "forged.npz", "diff3d", "declared")


def test_unwritten_hdf5_dataset_is_refused_before_reading(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    raw = simulate_dataset(4, N=64, seed=0)
    path = tmp_path / "hollow.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("diff3d", shape=(1900, 512, 512), dtype="<u4")  # never written
        f["xcoords"], f["ycoords"], f["probeGuess"] = raw.xcoords, raw.ycoords, raw.probeGuess
    assert path.stat().st_size < 50 * 1024**2
    done, seconds = ptycho_limited(
        "convert", str(path), str(tmp_path / "out.npz"), "--data-kind", "counts", cwd=tmp_path
    )
    assert seconds < TIMEOUT_S
    _one_line_exit_2(done, "hollow.h5", "'diff3d'", "bytes written in the file")
    assert not (tmp_path / "out.npz").exists()


def test_zlib_expansion_bound_used_by_the_check() -> None:
    """The check's 1,032-fold bound holds for deflate's best case (all zeros)."""
    compressed = zlib.compress(bytes(16 * 1024**2), 9)
    assert 16 * 1024**2 / len(compressed) < 1032
