"""The one task the receiver enqueues: load the delivery, parse it, run its handlers, mark it done.

`process_event` is a thin shell over `process_delivery`, a plain function the tests call directly.
Exactly-once effects on top of at-least-once delivery come from three things: the inbox status
(a finished delivery is never run again), a lease (two copies never run at once) and per-handler
completion marks (a retried delivery skips the handlers that already finished).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import orjson

from tasks.celery_app import app
from tasks.events import EventError, parse_event
from tasks.inbox import PENDING, TASK_NAME, lease_key, record_key
from tasks.logs import log_context
from tasks.runtime import Runtime, runtime

log = logging.getLogger("devops_agent.dispatch")

MAX_ATTEMPTS = 5
FINISHED = {"done", "invalid", "dead"}

# Renew only our own lease; delete only our own lease.
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Lease:
    """A per-delivery lock that a background thread keeps alive while the task runs."""

    def __init__(self, rt: Runtime, delivery_id: str) -> None:
        self.client = rt.redis
        self.key = lease_key(delivery_id)
        self.token = uuid.uuid4().hex
        self.ttl_ms = int(rt.settings.task_lease_seconds * 1000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return False
        self._thread = threading.Thread(target=self._renew, daemon=True, name="lease-renew")
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms)
            except Exception:  # noqa: BLE001 - a missed renewal only risks a harmless redelivery
                log.warning("lease renewal failed", exc_info=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self.client.eval(_RELEASE, 1, self.key, self.token)


def process_delivery(rt: Runtime, delivery_id: str) -> str:
    """Process one delivery from the inbox; returns what happened (for logs and tests)."""
    record = rt.inbox.load(delivery_id)
    if record is None:
        log.warning("delivery not in the inbox (expired?)", extra={"delivery_id": delivery_id})
        return "missing"
    event_name = record["event"].decode()
    kind = record["kind"].decode()
    idem = record.get("idempotency_key", b"").decode() or None
    with log_context(delivery_id=delivery_id, event=event_name, idempotency_key=idem):
        status = record["status"].decode()
        if status in FINISHED:
            log.info("already processed", extra={"status": status})
            return "already-" + status
        lease = Lease(rt, delivery_id)
        if not lease.acquire():
            log.info("another worker is processing this delivery")
            return "leased"
        try:
            return _run(rt, delivery_id, kind, record)
        finally:
            lease.release()


def _run(rt: Runtime, delivery_id: str, kind: str, record: dict[str, Any]) -> str:
    attempts = rt.redis.hincrby(record_key(delivery_id), "attempts", 1)
    if attempts > MAX_ATTEMPTS:
        log.error("giving up after %d attempts", MAX_ATTEMPTS)
        rt.inbox.finish(delivery_id, "dead")
        rt.metrics_event(kind, "dead")
        return "dead"
    try:
        event = parse_event(kind, orjson.loads(record["body"]))
    except (EventError, orjson.JSONDecodeError) as exc:
        log.warning("invalid payload: %s", exc)
        rt.inbox.finish(delivery_id, "invalid", error=str(exc)[:500])
        rt.metrics_event(kind, "invalid")
        return "invalid"
    rt.redis.hset(record_key(delivery_id), "status", "running")
    try:
        meta = orjson.loads(record.get("meta") or b"{}")
    except orjson.JSONDecodeError:
        meta = {}
    for h in rt.registry.for_kind(kind, rt.settings.handlers):
        done_field = "handled:" + h.name
        if rt.redis.hexists(record_key(delivery_id), done_field):
            continue  # finished on an earlier attempt
        ctx = rt.context(delivery_id, h.name, meta if isinstance(meta, dict) else {})
        try:
            with log_context(handler=h.name):
                h.fn(event, ctx)
        except Exception:
            log.exception("handler %s failed (attempt %d of %d)", h.name, attempts, MAX_ATTEMPTS)
            # Back off before the reaper redelivers: 2, 4, 8... times the redelivery delay.
            backoff = rt.settings.redeliver_after_seconds * (2 ** attempts)
            rt.redis.zadd(PENDING, {delivery_id: time.time() + backoff})
            rt.redis.hset(record_key(delivery_id), "status", "retrying")
            rt.metrics_event(kind, "error")
            raise
        rt.redis.hset(record_key(delivery_id), done_field, "1")
    rt.inbox.finish(delivery_id, "done")
    rt.metrics_event(kind, "done")
    return "done"


@app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def process_event(delivery_id: str) -> str:
    return process_delivery(runtime(), delivery_id)
