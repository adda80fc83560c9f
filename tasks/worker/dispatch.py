"""Deliveries: load one from the inbox, parse it, run its handlers, mark it finished.

`process_delivery` is the plain function behind the `process_event` task (tasks/worker/shells.py).
Exactly-once effects on top of at-least-once delivery come from: the delivery's state in the
engine (a finished delivery, or one backing off until later, is not run by a stray message),
its lease (two copies never run at once), per-handler completion marks (a retried delivery skips
the handlers that already finished), and handlers whose every effect is checked against GitLab
before it is repeated. When and whether a delivery runs again is the engine's decision
(tasks/engine/items.py), by the kind of error (tasks/engine/errors.py).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from tasks.engine.items import Outcome, StepFailed, run_item
from tasks.gitlab.events import EventError, parse_event
from tasks.intake.inbox import record_key
from tasks.platform.logs import log_context
from tasks.wiring.runtime import Runtime

log = logging.getLogger("devops_agent.dispatch")


def process_delivery(rt: Runtime, delivery_id: str) -> str:
    """Process one delivery from the inbox; returns what happened (for logs and tests)."""
    record = rt.inbox.load(delivery_id)
    if record is None:
        log.warning("delivery not in the inbox (expired?)", extra={"delivery_id": delivery_id})
        return "missing"
    event_name = record["event"].decode()
    kind = record["kind"].decode()
    idem = record.get("idempotency_key", b"").decode() or None
    try:
        meta = orjson.loads(record.get("meta") or b"{}")
    except orjson.JSONDecodeError:
        meta = {}
    meta = meta if isinstance(meta, dict) else {}

    def work(state: dict[str, str], attempt: int) -> Outcome:
        return _run_handlers(rt, delivery_id, kind, record, meta)

    def finished(status: str, state: dict[str, str]) -> None:
        rt.inbox.finished(delivery_id)
        rt.metrics_event(kind, status)
        if status in ("dead", "failed", "invalid"):
            log.error("delivery %s: %s", status, state.get("error", ""),
                      extra={"status": status})

    with log_context(delivery_id=delivery_id, event=event_name, idempotency_key=idem,
                     reconciled=True if meta.get("reconciled") else None):
        outcome = run_item(rt.schedule, "d:" + delivery_id, work,
                           ttl=rt.settings.inbox_retention_seconds, on_finish=finished,
                           on_error=lambda error_kind: rt.metrics_error(kind, error_kind))
        if outcome.startswith("already-") or outcome in ("not-due", "leased"):
            log.info("skipped: %s", outcome)
        return outcome


def _run_handlers(rt: Runtime, delivery_id: str, kind: str, record: dict[str, Any],
                  meta: dict[str, Any]) -> Outcome:
    if "body" not in record:
        return Outcome("invalid", detail="the delivery's body is no longer kept")
    try:
        event = parse_event(kind, orjson.loads(record["body"]))
    except (EventError, orjson.JSONDecodeError) as exc:
        log.warning("invalid payload: %s", exc)
        return Outcome("invalid", detail=str(exc)[:500])
    for h in rt.registry.for_kind(kind, rt.settings.handlers):
        done_field = "handled:" + h.name
        if rt.redis.hexists(record_key(delivery_id), done_field):
            continue  # finished on an earlier attempt
        ctx = rt.context(delivery_id, h.name, meta)
        try:
            with log_context(handler=h.name):
                h.fn(event, ctx)
        except Exception as exc:
            raise StepFailed(h.name, exc) from exc
        rt.redis.hset(record_key(delivery_id), done_field, "1")
    return Outcome("done")
