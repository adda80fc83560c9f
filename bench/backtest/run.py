"""Benchmark: `rules backtest` over 1,000 stored job logs, next to two baselines in the same run.

    ./dev bench backtest [--logs 1000] [--rounds 3]

The stored logs are the corpus (fixtures/logs, failed and passed jobs as the manifest says),
repeated under distinct job ids until there are --logs of them, gzip-compressed in a backtest
cache exactly as `devops-agent rules backtest` keeps them. It reports logs/s and MB/s for:
  * floor: reading and decompressing every stored log, nothing else;
  * backtest: `backtest.run` with the layered classifier over the default table (one scan per
    log for every rule, context layers, error lines), and with a candidate table compared
    against the current one (two classifications per log);
  * naive: what a hand-written backtest does, every rule's patterns tried line by line with
    Python's `re` (the same patterns; re2 syntax they share with `re`).
The best of --rounds is reported, with the median.
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tasks.ci.rules import load_table
from tasks.ci.rules.backtest import LogCache, StoredJob, run
from tasks.ci.rules.classifier import Classifier
from tasks.ci.rules.corpus import load_manifest
from tasks.ci.rules.table import CATEGORIES


def store(n: int, root: Path) -> list[StoredJob]:
    entries = load_manifest(ROOT / "fixtures" / "logs", CATEGORIES)
    cache = LogCache(root, "gitlab.example.com")
    jobs = []
    for i in range(n):
        e = entries[i % len(entries)]
        status = "failed" if e.outcome == "failed" else "success"
        path = cache.put("acme/shop", 100_000 + i, e.path.read_bytes())
        jobs.append(StoredJob("acme/shop", 100_000 + i, e.job.get("name", "job"),
                              e.job.get("stage", "test"), status, e.job.get("failure_reason"),
                              "2026-11-30T00:00:00Z", path))
    return jobs


def naive(jobs: list[StoredJob], table) -> None:
    compiled = []
    for rule in table.rules:
        pats = []
        for p in rule.match.log:
            try:
                pats.append(re.compile(p.encode()))
            except re.error:
                pass
        compiled.append((rule, pats))
    for job in jobs:
        with gzip.open(job.path, "rb") as fh:
            lines = fh.read().split(b"\n")
        for _rule, pats in compiled:
            if pats and any(p.search(line) for line in lines for p in pats):
                break


def floor(jobs: list[StoredJob]) -> int:
    total = 0
    for job in jobs:
        with gzip.open(job.path, "rb") as fh:
            total += len(fh.read())
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="backtest-bench-"))
    try:
        jobs = store(args.logs, work)
        table = load_table()
        candidate = Classifier(table)
        current = Classifier(load_table())
        size = floor(jobs)
        times: dict[str, list[float]] = {"floor": [], "backtest": [], "compare": [], "naive": []}
        for _ in range(args.rounds):
            for key, fn in (("floor", lambda: floor(jobs)),
                            ("backtest", lambda: run(jobs, candidate)),
                            ("compare", lambda: run(jobs, candidate, current)),
                            ("naive", lambda: naive(jobs, table))):
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
        report = run(jobs, candidate)
        print(f"{len(jobs)} stored logs ({report.failed_jobs} failed, {report.passed_jobs} passed), "
              f"{size / 1e6:.1f} MB uncompressed; {len(table.rules)} rules; backend {table.backend}")
        print(f"{'':40}{'seconds':>9}{'logs/s':>10}{'MB/s':>8}{'vs naive':>10}{'median s':>10}")
        naive_s = min(times["naive"])
        for name, key in (("floor: read + gunzip only", "floor"),
                          ("backtest (layered classifier)", "backtest"),
                          ("backtest, candidate vs current", "compare"),
                          ("naive: Python re, rule by rule", "naive")):
            secs = min(times[key])
            print(f"{name:40}{secs:9.2f}{len(jobs) / secs:10,.0f}{size / 1e6 / secs:8.0f}"
                  f"{naive_s / secs:9.1f}x{statistics.median(times[key]):10.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
