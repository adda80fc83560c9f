"""The worker's engine loop: schedule the periodic items, then send every item that is due
(tasks/engine/schedule.py) a few times per `lost_after`. Every worker runs one; the claim is atomic, so
more workers only mean faster sends, never a second copy."""

from __future__ import annotations

import threading

from tasks.config.settings import Settings
from tasks.engine.schedule import start_scheduler
from tasks.wiring.runtime import build_runtime
from tasks.worker.periodic import ensure_periodic


def start_engine(settings: Settings, period: float | None = None) -> threading.Thread:
    rt = build_runtime(settings)
    # Periodic items are (re)scheduled on every pass, inside the loop's error handling: a Redis
    # that is down or full at start must not keep the scheduler from starting.
    period = period or max(0.2, min(5.0, settings.redeliver_after_seconds / 3))
    # Re-checked every pass: a periodic item is never left unscheduled (one ZSCORE each).
    def on_pass() -> None:
        ensure_periodic(rt)

    return start_scheduler(rt.schedule, period, on_pass=on_pass)
