"""Benchmark: classify a large realistic job log, next to GNU grep over the same patterns.

    ./dev bench classify [--size MB] [--tmpdir DIR]

Writes the generated log to a temporary directory (deleted afterwards), then reports:
  * engine pass: RuleTable.classify over the file, in this process (table already compiled),
    once with the Hyperscan prefilter and once with the re2-only fallback;
  * whole process: `devops-agent classify FILE --format json` wall time, start-up and table
    compile included, with its peak RSS;
  * GNU grep: `LC_ALL=C grep -E -f patterns FILE`, the default table's log patterns translated
    to ERE (named and non-capturing groups made plain, \\d -> [0-9], (?i) dropped), which is
    close enough to compare throughput, not results.
Numbers are MB/s (10^6 bytes) and ratios to grep, from the best of --repeat interleaved rounds;
the median and worst round show the spread (a shared machine moves them a lot), and the
engine rows give their CPU seconds (all threads) next to wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import genlog

from tasks.ci.rules import load_table
from tasks.ci.rules.reading import read_chunks


def ere(pattern: str) -> str:
    p = re.sub(r"\(\?P?<[A-Za-z_]\w*>", "(", pattern)
    p = p.replace("(?:", "(").replace("(?i)", "").replace("(?U)", "")
    return p.replace("\\d", "[0-9]")


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) of one call."""
    cpu, start = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def run_child(argv: list[str]) -> tuple[float, int, bytes]:
    """Wall time, peak RSS (KiB) and stdout of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "LC_ALL": "C"})
    out = proc.stdout.read()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return time.perf_counter() - start, usage.ru_maxrss, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=200, help="log size in MB (default 200)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing; the best is reported")
    ap.add_argument("--tmpdir", default=None, help="where to write the log (default: system temp)")
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="classify-bench-", dir=args.tmpdir))
    try:
        log = workdir / "job.log"
        size = genlog.write(log, args.size * 1_000_000)
        mb = size / 1e6
        subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache

        start = time.perf_counter()
        table = load_table()
        compile_s = time.perf_counter() - start
        patterns = workdir / "patterns.ere"
        patterns.write_text("\n".join(ere(p.source) for p in table.engine.patterns) + "\n")

        result = table.classify(read_chunks(str(log)))
        assert result.rule_id == "gcc-clang-error", result.to_dict()
        re2_table = load_table(use_hyperscan=False)
        cli = [sys.executable, "-m", "tasks.cli.main", "classify", str(log), "--format", "json"]
        grep = [shutil.which("grep") or "grep", "-E", "-f", str(patterns), str(log)]

        # Rounds interleave the four measurements so that load from other processes on a
        # shared machine hits them alike; each keeps its best round.
        timings: dict[str, list[float]] = {"hs": [], "re2": [], "proc": [], "grep": []}
        cpu: dict[str, list[float]] = {"hs": [], "re2": []}
        proc_rss = 0
        for _ in range(args.repeat):
            for key, tbl in (("hs", table), ("re2", re2_table)):
                wall, used = timed(lambda tbl=tbl: tbl.classify(read_chunks(str(log))))
                timings[key].append(wall)
                cpu[key].append(used)
            secs, rss, _ = run_child(cli)
            timings["proc"].append(secs)
            proc_rss = max(proc_rss, rss)
            timings["grep"].append(run_child(grep)[0])
        grep_s = min(timings["grep"])

        with open(log, "rb") as fh:
            n_lines = sum(1 for _ in fh)
        print(f"log: {mb:.0f} MB, {n_lines:,} lines; rules: {len(table.rules)}, "
              f"log patterns: {len(table.engine.patterns)}; backend: {table.backend}; "
              f"compile {compile_s * 1000:.0f} ms")
        print(f"{'':34}{'seconds':>9}{'MB/s':>9}{'vs grep':>9}   {'median':>7}{'worst':>7}{'cpu s':>7}")
        rows = [
            (f"engine pass ({table.backend})", "hs"),
            ("engine pass (re2 fallback)", "re2"),
            ("devops-agent classify (process)", "proc"),
            ("LC_ALL=C grep -E -f patterns", "grep"),
        ]
        for name, key in rows:
            times = timings[key]
            secs = min(times)
            used = f"{min(cpu[key]):7.2f}" if key in cpu else ""
            print(f"{name:34}{secs:9.2f}{mb / secs:9.0f}{grep_s / secs:8.2f}x   "
                  f"{statistics.median(times):7.2f}{max(times):7.2f}{used}")
        print(f"classify process peak RSS: {proc_rss / 1024:.0f} MiB; cores: {os.cpu_count()}; "
              f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; rounds: {args.repeat}")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
