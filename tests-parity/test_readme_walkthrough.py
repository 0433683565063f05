"""The README's newcomer path, run as written: the demo, then its "From a beamline HDF5 file to an
image" section (the Python snippet and the shell commands, copied out of README.md verbatim).

The section starts from the random-scan demo (``ptycho demo --scan random --output-dir
ptycho-demo-random``), which its text names; a short one (one epoch, small scans) stands in
for it: the commands after it only need its files (``ptycho-demo-random/data/test_data.npz``
and the model archive). The reconstruction of the
converted HDF5 scan must cover the same region as that of the demo's own test scan (the same
positions after the metres round trip) and equal it within rel 1e-4 on the amplitude.
What differs between the two inputs: float32 rounding in the counts round trip and the two
masked detector pixels set to 0; together they moved the image by 2.4e-7 (measured on the
full demo). 1e-4 is the project's archive cross-loading tolerance; a lost mask (a dead pixel
reading 4e9 counts: an amplitude 40 times the brightest real one) or another scale or grouping moves
the image by orders of magnitude more.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")
pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## From a beamline HDF5 file to an image"


def _section_blocks() -> tuple[str, str]:
    """The section's Python snippet and its shell commands, as README.md has them."""
    text = README.read_text()
    assert SECTION in text, f"README.md lost its section {SECTION!r}"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    python = re.findall(r"```python\n(.*?)```", body, re.DOTALL)
    shell = re.findall(r"```bash\n(.*?)```", body, re.DOTALL)
    assert len(python) == 1 and len(shell) == 1, "expected one python and one bash block"
    return python[0], shell[0]


def _commands(block: str) -> list[list[str]]:
    """Shell lines (continuations joined) split into argument lists."""
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    bindir = Path(sys.executable).parent
    exe = {"python": sys.executable, "ptycho": shutil.which("ptycho", path=str(bindir))}
    assert exe["ptycho"], "the ptycho console script is not installed next to this interpreter"
    env = {k: v for k, v in os.environ.items() if k != "PTYCHO_BACKEND"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    argv = [exe.get(argv[0], argv[0]), *argv[1:]]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


def test_readme_hdf5_walkthrough(tmp_path: Path) -> None:
    snippet, shell = _section_blocks()
    demo = ["ptycho", "demo", "--scan", "random", "--output-dir", "ptycho-demo-random"]
    assert f"`{' '.join(demo)}`" in README.read_text(), "the section names the demo it starts from"
    done = _run([*demo, "--n-images", "64", "--n-test", "48", "--epochs", "1"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    name = re.search(r"^# (\S+\.py)", snippet, re.MULTILINE)
    assert name, "the snippet's first line names its file"
    (tmp_path / name.group(1)).write_text(snippet)
    for argv in _commands(shell):
        done = _run(argv, tmp_path)
        assert done.returncode == 0, (argv, done.stderr[-3000:])
    assert (tmp_path / "recon-h5" / "reconstruction.png").is_file()
    direct = ["ptycho", "reconstruct", "--model", "ptycho-demo-random"]
    test_scan = "ptycho-demo-random/data/test_data.npz"
    done = _run([*direct, "--data", test_scan, "--output-dir", "direct"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    via_h5 = np.load(tmp_path / "recon-h5" / "reconstruction.npz")
    reference = np.load(tmp_path / "direct" / "reconstruction.npz")
    np.testing.assert_array_equal(via_h5["coverage"], reference["coverage"])
    covered = reference["coverage"]
    amp, ref = via_h5["amplitude"][covered], reference["amplitude"][covered]
    assert np.all(np.isfinite(amp))
    change = np.linalg.norm(amp - ref) / np.linalg.norm(ref)
    assert change <= 1e-4, f"HDF5 path vs the NPZ it came from: rel amplitude change {change:.3g}"
