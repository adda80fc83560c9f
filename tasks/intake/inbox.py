"""The inbox: a durable record of every acknowledged delivery until a worker has processed it.

Layout in Redis (all keys under `da:`):
  da:dedup:<sha256 of the delivery key>  -> delivery id, expires after the dedup window (24 h)
  da:inbox:<delivery id>                 -> hash: event, kind, status, attempts, received, ...
                                            (the delivery's state in the engine, tasks/engine/schedule.py)
  da:body:<delivery id>                  -> the body, zlib-compressed; kept `body_retention`
                                            after the delivery finished, the record longer
  da:inbox:log                           -> zset: delivery id -> received time (listing, replay);
                                            trimmed to the retention window on every accept
  da:schedule                            -> the engine's schedule; a delivery is `d:<id>`

Why not just `task.delay()`: one Lua script does dedup + record + schedule + publish atomically
in one round trip, so two concurrent copies of one delivery can never both be enqueued, and the
2xx is sent only once the task message is in Redis (tasks/engine/messages.py has the message format).
"""

from __future__ import annotations

import hashlib
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from tasks.engine.messages import task_message
from tasks.engine.schedule import SCHEDULE, TASKS

PREFIX = "da:"
LOG = PREFIX + "inbox:log"
TASK_NAME = TASKS["d"]
# A listing bound for the log, on top of its time window (a flood must not grow it unbounded).
MAX_LOG = 200_000
# Bodies above this are stored compressed (most are: JSON compresses 5-10x).
COMPRESS_ABOVE = 1024

# KEYS: dedup, record, schedule, log, queue, body
# ARGV: id, dedup_ttl, now, lost_check_at, retention, message, body, body_ttl, max_log,
#       then record field/value pairs
_ACCEPT = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[6], ARGV[7], 'EX', ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[4], 'd:' .. ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[3] - ARGV[5])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -tonumber(ARGV[9]) - 1)
redis.call('LPUSH', KEYS[5], ARGV[6])
-- Last, so a failure above never leaves a dedup mark for a delivery that was not queued.
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def dedup_key(idempotency_key: str | None, event: str, body: bytes, scope: str = "") -> str:
    """GitLab's Idempotency-Key (the same on a manual resend), else a hash of event + body;
    within `scope`, the secret's binding, so a sender holding one project's secret cannot
    pre-empt another project's delivery by reusing its key."""
    h = hashlib.sha256(b"scope\0" + scope.encode("utf-8", "surrogatepass") + b"\0")
    if idempotency_key:
        h.update(b"key\0" + idempotency_key.encode("utf-8", "surrogatepass"))
    else:
        h.update(b"body\0" + event.encode() + b"\0" + body)
    return PREFIX + "dedup:" + h.hexdigest()


def celery_message(task_id: str, queue: str, delivery_id: str, tag: str | None = None) -> bytes:
    """The `process_event(delivery_id)` message (tasks/engine/messages.py)."""
    return task_message(TASK_NAME, [delivery_id], queue, task_id=task_id, tag=tag,
                        origin="devops-agent-web")


def pack_body(body: bytes) -> bytes:
    return b"z" + zlib.compress(body, 1) if len(body) > COMPRESS_ABOVE else b"r" + body


def unpack_body(raw: bytes | None) -> bytes | None:
    if raw is None:
        return None
    return zlib.decompress(raw[1:]) if raw[:1] == b"z" else raw[1:]


@dataclass(frozen=True)
class Accepted:
    delivery_id: str
    duplicate: bool


class Inbox:
    def __init__(self, client: redis.Redis, *, queue: str, dedup_ttl: int = 86400,
                 redeliver_after: float = 15.0, retention: int = 7 * 86400,
                 body_retention: int = 86400) -> None:
        # redis-py types replies as bytes | str (decode_responses decides); ours are bytes.
        self.client: Any = client
        self.queue = queue
        self.dedup_ttl = dedup_ttl
        self.redeliver_after = redeliver_after
        self.retention = retention
        self.body_retention = min(body_retention, retention)
        self._accept = client.register_script(_ACCEPT)

    # -- receiver side -------------------------------------------------------------------------
    def accept(self, *, event: str, kind: str, body: bytes, idempotency_key: str | None,
               meta: dict[str, Any] | None = None) -> Accepted:
        """Record and enqueue a delivery, or return the id of the copy seen before."""
        delivery_id = uuid.uuid4().hex
        now = time.time()
        fields: list[Any] = [
            "event", event, "kind", kind, "status", "queued", "attempts", 0,
            "received", repr(now), "published", repr(now), "idempotency_key", idempotency_key or "",
            "meta", orjson.dumps(meta or {}), "bytes", len(body),
        ]
        result = self._accept(
            keys=[dedup_key(idempotency_key, event, body, str((meta or {}).get("bound_to") or "")),
                  record_key(delivery_id), SCHEDULE, LOG,
                  self.queue, body_key(delivery_id)],
            args=[delivery_id, self.dedup_ttl, now, now + self.redeliver_after, self.retention,
                  celery_message(delivery_id, self.queue, delivery_id), pack_body(body),
                  self.retention, MAX_LOG, *fields],
        )
        if result == 1:
            return Accepted(delivery_id, duplicate=False)
        return Accepted(result.decode() if isinstance(result, bytes) else str(result), True)

    # -- worker side ---------------------------------------------------------------------------
    def load(self, delivery_id: str) -> dict[str, Any] | None:
        raw = self.client.hgetall(record_key(delivery_id))
        if not raw:
            return None
        record = {k.decode(): v for k, v in raw.items()}
        body = unpack_body(self.client.get(body_key(delivery_id)))
        if body is not None:
            record["body"] = body
        return record

    def trim_log(self, now: float | None = None) -> int:
        """Drop log entries older than the retention (their records have expired)."""
        cutoff = (time.time() if now is None else now) - self.retention
        return int(self.client.zremrangebyscore(LOG, "-inf", cutoff))

    def finished(self, delivery_id: str) -> None:
        """After a delivery finished, its body goes sooner than its record (which `deliveries`
        lists and the audit refers to)."""
        self.client.expire(body_key(delivery_id), self.body_retention)

    def requeue(self, delivery_id: str) -> None:
        """Run a recorded delivery again (an operator's decision): clear its per-handler marks
        and attempts, and send it now."""
        key = record_key(delivery_id)
        if not self.client.exists(body_key(delivery_id)):
            raise LookupError(f"delivery {delivery_id}'s body is no longer kept "
                              f"(bodies stay {self.body_retention}s after a delivery finished)")
        handled = [f for f in self.client.hkeys(key) if f.startswith(b"handled:")]
        pipe = self.client.pipeline(transaction=True)
        if handled:
            pipe.hdel(key, *handled)
        pipe.hset(key, mapping={"status": "queued", "attempts": 0, "published": repr(time.time())})
        pipe.hincrby(key, "requeued", 1)
        pipe.persist(body_key(delivery_id))
        pipe.zadd(SCHEDULE, {"d:" + delivery_id: time.time() + self.redeliver_after})
        pipe.lpush(self.queue, celery_message(uuid.uuid4().hex, self.queue, delivery_id))
        pipe.execute()

    def recent(self, limit: int = 50, since: float | None = None) -> list[dict[str, Any]]:
        """Newest deliveries first, without their bodies (for `deliveries` and audit)."""
        ids = self.client.zrevrangebyscore(LOG, "+inf", since or "-inf", start=0, num=limit)
        pipe = self.client.pipeline(transaction=False)
        for raw_id in ids:
            pipe.hmget(record_key(raw_id.decode()), "event", "status", "received",
                       "idempotency_key", "attempts", "error", "meta")
        out = []
        for raw_id, fields in zip(ids, pipe.execute(), strict=True):
            if fields[0] is None:
                continue
            meta = orjson.loads(fields[6] or b"{}")
            out.append({"delivery_id": raw_id.decode(), "event": fields[0].decode(),
                        "status": fields[1].decode(), "received": float(fields[2]),
                        "idempotency_key": fields[3].decode(), "attempts": int(fields[4] or 0),
                        "error": (fields[5] or b"").decode(errors="replace") or None,
                        "reconciled": bool(meta.get("reconciled"))})
        return out


def record_key(delivery_id: str) -> str:
    return PREFIX + "inbox:" + delivery_id


def body_key(delivery_id: str) -> str:
    return PREFIX + "body:" + delivery_id
