"""Periodic work as engine items (`p:<name>`): the schedule lives in Redis, so a pass runs once
across any number of workers (the engine's claim is atomic) and survives restarts, without a
separate beat process to deploy and keep single.

A periodic item never dies of its errors: whatever a pass raised, it is logged (bugs reach
Sentry through the logging integration) and the next pass is scheduled at the usual interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tasks.engine.items import Outcome, run_item
from tasks.worker.reconcile import run_reconcile

log = logging.getLogger("devops_agent.periodic")


def _reconcile(rt: Any) -> str:

    report = run_reconcile(rt)
    return f"{report.pipelines} pipeline(s), {report.notes} note(s)"


def _housekeeping(rt: Any) -> str:
    """The delivery log is trimmed on every accept; a quiet receiver trims it here."""
    removed = rt.inbox.trim_log()
    return f"{removed} expired delivery log entr{'y' if removed == 1 else 'ies'}"


# name -> (work, seconds between passes, from settings)
PERIODIC: dict[str, tuple[Callable[[Any], str], Callable[[Any], float]]] = {
    "reconcile": (_reconcile, lambda settings: settings.reconcile_interval_seconds),
    "housekeeping": (_housekeeping, lambda settings: 60.0),
}


def ensure_periodic(rt: Any) -> list[str]:
    """Schedule every periodic item that is not scheduled yet, due now (the first pass after a
    start is what catches up on what happened while the service was down)."""
    return [name for name in PERIODIC
            if PERIODIC[name][1](rt.settings) > 0 and rt.schedule.ensure("p:" + name)]


def run_periodic(rt: Any, name: str) -> str:
    if name not in PERIODIC:
        return "unknown"
    work, interval = PERIODIC[name]

    def once(state: dict[str, str], attempt: int) -> Outcome:
        every = interval(rt.settings)
        try:
            detail = work(rt)
            log.info("periodic %s: %s", name, detail)
        except Exception:  # see the module's docstring
            log.exception("periodic %s failed; next pass in %.0fs", name, every)
            rt.metrics_error("periodic", "failed")
        return Outcome(again=every) if every > 0 else Outcome("done")

    return run_item(rt.schedule, "p:" + name, once)
