"""The benchmark script runs end to end (tiny size): it is not part of the suite's numbers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.mark.timeout(120)
def test_bench_runs_with_a_small_log(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "classify" / "run.py"), "--size", "2", "--repeat", "1",
         "--tmpdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "engine pass" in proc.stdout and "grep" in proc.stdout and "MB/s" in proc.stdout
    assert not list(tmp_path.iterdir())  # the generated log is removed
