"""Process groups for the benches: every server a bench starts leads its own group, is listed in
LIVE, and is stopped (TERM, then KILL, then any stragglers of its group) on exit or Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

LIVE: list[subprocess.Popen] = []  # process-group leaders to stop on exit


def group_pids(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                out.append(int(entry))
    return out


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
    # children (a prefork pool) left behind by a leader that died first
    for pid in group_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc in LIVE:
        LIVE.remove(proc)
