"""SLOW: a 1 GB log streams through classify in a child process with peak RSS under 100 MB.

The log is generated as a stream (bench/classify/genlog.py: passing-job noise with colours and
section markers, a real compiler error at the very end); nothing is written to disk. The child
is measured from a small parent process whose only child it is, so RUSAGE_CHILDREN's ru_maxrss
is the classifier's peak and not that of some other process this test session waited for.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT

GB = 1 << 30

CHILD = textwrap.dedent(
    """
    import json, sys, time
    sys.path[:0] = [{root!r}, {bench!r}]
    import genlog
    from tasks.ci.rules import load_table
    table = load_table(use_hyperscan={hs})
    start = time.perf_counter()
    result = table.classify(genlog.generate({size}))
    print(json.dumps({{"rule": result.rule_id, "line": result.evidence[0].line,
                       "seconds": time.perf_counter() - start}}))
    """
)

PARENT = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    out = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, check=True).stdout
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"child": json.loads(out), "peak_mib": peak_kib / 1024}))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("hs", [True, False], ids=["hyperscan", "re2"])
def test_one_gigabyte_log_in_under_100_mb(hs):
    child = CHILD.format(root=str(ROOT), bench=str(ROOT / "bench" / "classify"), size=GB, hs=hs)
    proc = subprocess.run([sys.executable, "-c", PARENT, child], capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    print(report)  # shown with -s: the measured numbers
    assert report["child"]["rule"] == "gcc-clang-error"
    assert report["child"]["line"] > 15_000_000  # the error sits after a gigabyte of noise
    assert report["peak_mib"] < 100
