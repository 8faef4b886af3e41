"""The benchmark harness's memory figures: a process's own peak, or a refusal, never a guess."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from measure import Peak, measure  # noqa: E402
from run import Row, format_row  # noqa: E402

if not Path("/proc/self/status").exists():
    pytest.skip("peak memory is read from /proc (Linux)", allow_module_level=True)

CHILD_MB = 40


def test_a_small_child_of_a_big_parent_reports_its_own_peak():
    held = b"x" * (200 << 20)  # what getrusage in the child would wrongly include
    measured = measure([sys.executable, "-c", f"b = b'x' * ({CHILD_MB} << 20)"])
    assert len(held) == 200 << 20
    assert measured.peak.trusted, measured.peak.doubt
    assert CHILD_MB < measured.peak.mb < CHILD_MB + 30
    row = Row("child", measured.peak, Peak.vmhwm(10 << 10), "MB", "", True)
    assert row.refusal == ""
    assert f"{measured.peak.mb:.3f}" in format_row(row)


def test_a_peak_that_may_be_the_launchers_is_refused():
    # /bin/true is smaller than the launcher: the figure wait4 gives is the launcher's copy
    measured = measure(["/bin/true"])
    assert not measured.peak.trusted
    line = format_row(Row("tiny", measured.peak, Peak.vmhwm(1024), "MB", "", True))
    assert "refused" in line and "may be that one's" in line
    assert f"{measured.peak.mb:.3f}" not in line


def test_a_bare_memory_number_is_refused_and_time_rows_are_not():
    line = format_row(Row("from getrusage", 628.0, Peak.vmhwm(1024), "MB", "", True))
    assert "refused: a bare number" in line and "628" not in line
    assert "refused" not in format_row(Row("wall", 2.0, 1.0, "s", "<= 2x", True))


def test_a_failing_child_raises_with_its_error_output():
    with pytest.raises(RuntimeError, match="boom"):
        measure([sys.executable, "-c", "import sys; sys.exit('boom')"])
    assert measure(["false"], check=False).returncode == 1
