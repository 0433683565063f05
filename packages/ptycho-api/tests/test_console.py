"""Console helpers of the CLI that act on the process: the native stderr filter.

The patterns are given here as a backend would give them (``LogFilters.native_lines``): the
console itself knows no framework.

The filter works on file descriptor 2, so each case runs in a real subprocess whose stderr is
a pipe, exactly as when the ``ptycho`` command runs in a terminal or under CI.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Lines from TensorFlow 2.21's import on a CPU machine; the warning in the classic glog time format.
ABSL_NOTICE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
)
ABSL_INFO = (
    "I0000 00:00:1795976883.762377    6478 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results"
)
ABSL_WARNING = "W1129 18:27:09.762751 6478 cudart_stub.cc:31] Could not find cuda drivers"
ABSL_ERROR = "E0000 00:00:1795976883.800000    6478 cuda_dnn.cc:8310] Unable to register cuDNN"
PATTERNS = (
    rb"[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\]",
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called",
)


def _run(body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        f"""
        import os, sys
        from ptycho_api.cli.console import native_log_filtered
        lines = {[ABSL_NOTICE, ABSL_INFO, ABSL_WARNING, ABSL_ERROR]!r}
        patterns = {PATTERNS!r}
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )


def test_native_info_and_warning_lines_are_dropped_others_kept():
    res = _run(
        """
        with native_log_filtered(patterns):
            for line in lines:
                os.write(2, (line + "\\n").encode())
            print("python warning text", file=sys.stderr)
        print("after", file=sys.stderr)
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [ABSL_ERROR, "python warning text", "after"]


def test_captured_lines_are_written_when_the_block_raises():
    res = _run(
        """
        try:
            with native_log_filtered(patterns):
                os.write(2, (lines[1] + "\\nreal problem\\n").encode())
                raise RuntimeError("boom")
        except RuntimeError:
            print("caught", file=sys.stderr)
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == ["real problem", "caught"]


def test_inactive_filter_passes_everything():
    res = _run(
        """
        with native_log_filtered(patterns, active=False):
            os.write(2, (lines[0] + "\\n" + lines[1] + "\\n").encode())
        with native_log_filtered(()):
            os.write(2, (lines[1] + "\\n").encode())
        """
    )
    assert res.stderr.splitlines() == [ABSL_NOTICE, ABSL_INFO, ABSL_INFO]


def test_each_given_pattern_applies_and_a_broken_one_is_ignored():
    res = _run(
        """
        with native_log_filtered([rb"noise \\d+", "chatter:", b"(unclosed"]):
            os.write(2, b"noise 12\\nkeep noise x\\nchatter: hi\\n(unclosed\\n")
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == ["keep noise x", "(unclosed"]


def test_metrics_table_marks_unscored_phase_and_shows_the_untrained_baseline() -> None:
    from ptycho_api.cli.console import format_metrics_table

    metrics = {"ssim": (0.5, 0.9), "frc": ([1.0], [1.0])}
    untrained = {"ssim": (0.25, 0.95), "frc": ([1.0], [1.0])}
    plain = format_metrics_table(metrics).splitlines()
    assert plain[0].split() == ["metric", "amplitude", "phase"]
    assert plain[2].split() == ["ssim", "0.5", "0.9"] and len(plain) == 3
    flat = format_metrics_table(metrics, phase=False).splitlines()
    assert flat[2].split() == ["ssim", "0.5", "n/a"]
    assert "ground truth has no phase" in flat[-1]
    both = format_metrics_table(metrics, baseline=untrained).splitlines()
    assert both[0].split() == ["metric", "amplitude", "(untrained)", "phase", "(untrained)"]
    assert both[2].split() == ["ssim", "0.5", "0.25", "0.9", "0.95"]
