"""The inbox: a durable record of every acknowledged delivery until a worker has processed it.

Layout in Redis (all keys under `da:`):
  da:dedup:<sha256 of the delivery key>  -> delivery id, expires after the dedup window (24 h)
  da:inbox:<delivery id>                 -> hash: event, body, status, attempts, received, ...
  da:inbox:pending                       -> zset: delivery id -> when to re-enqueue if unfinished
  da:inbox:log                           -> zset: delivery id -> received time (replay, audit)
  da:lease:<delivery id>                 -> the worker processing it now (expires unless renewed)

Why not just `task.delay()`: publishing through Celery costs ~0.6-1 ms of Python per message and
takes its own round trip, separate from the dedup check and the record. Here one Lua script does
dedup + record + publish atomically in one round trip, so two concurrent copies of one delivery
can never both be enqueued, and the 2xx is sent only once the task message is in Redis.
The message itself is Celery's documented protocol 2 in kombu's Redis envelope (`celery_message`);
the end-to-end tests run it through a real worker.

Why a reaper: Redis hands an unacknowledged task back only after `visibility_timeout`, and kombu
moves a message from the queue to its unacked set in two steps, so a worker killed in between
loses it. The reaper re-enqueues any pending delivery whose lease is gone, within seconds.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import redis

PREFIX = "da:"
PENDING = PREFIX + "inbox:pending"
LOG = PREFIX + "inbox:log"
TASK_NAME = "devops_agent.process_event"

# KEYS: dedup, record, pending, log, queue
# ARGV: id, dedup_ttl, now, redeliver_at, retention, message, then record field/value pairs
_ACCEPT = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('LPUSH', KEYS[5], ARGV[6])
-- Last, so a failure above never leaves a dedup mark for a delivery that was not queued.
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# Claim due deliveries nobody holds a lease on: push their due time forward and return them
# with their redelivery count; the caller publishes a fresh message for each. A crash between
# the claim and the publish only delays that delivery by one more window.
# A delivery still 'queued' while the queue holds messages is most likely waiting its turn
# behind a backlog, not lost: re-enqueueing it then only adds work when workers are behind
# (seen in bench/e2e), so 'queued' ones are claimed only once the queue has drained.
# KEYS: pending, queue. ARGV: now, next_due, limit.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
local backlog = redis.call('LLEN', KEYS[2]) > 0
for _, id in ipairs(due) do
  local status = redis.call('HGET', 'da:inbox:' .. id, 'status')
  if status == false or status == 'done' or status == 'dead' or status == 'invalid' then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    if redis.call('EXISTS', 'da:lease:' .. id) == 0 and not (status == 'queued' and backlog) then
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = redis.call('HINCRBY', 'da:inbox:' .. id, 'redeliveries', 1)
    end
  end
end
return claimed
"""


def dedup_key(idempotency_key: str | None, event: str, body: bytes) -> str:
    """GitLab's Idempotency-Key (the same on a manual resend), else a hash of event + body."""
    h = hashlib.sha256()
    if idempotency_key:
        h.update(b"key\0" + idempotency_key.encode("utf-8", "surrogatepass"))
    else:
        h.update(b"body\0" + event.encode() + b"\0" + body)
    return PREFIX + "dedup:" + h.hexdigest()


def celery_message(task_id: str, queue: str, delivery_id: str, tag: str | None = None) -> bytes:
    """A Celery protocol-2 task message `process_event(delivery_id)`, in kombu's Redis envelope."""
    body = orjson.dumps([[delivery_id], {}, {"callbacks": None, "errbacks": None,
                                             "chain": None, "chord": None}])
    headers = {
        "lang": "py", "task": TASK_NAME, "id": task_id, "shadow": None, "eta": None,
        "expires": None, "group": None, "group_index": None, "retries": 0,
        "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": repr((delivery_id,)), "kwargsrepr": "{}", "origin": "devops-agent-web",
        "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    return orjson.dumps({
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": tag or str(uuid.uuid4()),
        },
    })


@dataclass(frozen=True)
class Accepted:
    delivery_id: str
    duplicate: bool


class Inbox:
    def __init__(self, client: redis.Redis, *, queue: str, dedup_ttl: int = 86400,
                 redeliver_after: float = 15.0, retention: int = 7 * 86400) -> None:
        self.client = client
        self.queue = queue
        self.dedup_ttl = dedup_ttl
        self.redeliver_after = redeliver_after
        self.retention = retention
        self._accept = client.register_script(_ACCEPT)
        self._claim_due = client.register_script(_CLAIM_DUE)

    # -- receiver side -------------------------------------------------------------------------
    def accept(self, *, event: str, kind: str, body: bytes, idempotency_key: str | None,
               meta: dict[str, Any] | None = None) -> Accepted:
        """Record and enqueue a delivery, or return the id of the copy seen before."""
        delivery_id = uuid.uuid4().hex
        now = time.time()
        fields: list[Any] = [
            "event", event, "kind", kind, "body", body, "status", "queued", "attempts", 0,
            "received", repr(now), "idempotency_key", idempotency_key or "",
            "meta", orjson.dumps(meta or {}),
        ]
        result = self._accept(
            keys=[dedup_key(idempotency_key, event, body), record_key(delivery_id), PENDING, LOG,
                  self.queue],
            args=[delivery_id, self.dedup_ttl, now, now + self.redeliver_after, self.retention,
                  celery_message(delivery_id, self.queue, delivery_id), *fields],
        )
        if result == 1:
            return Accepted(delivery_id, duplicate=False)
        return Accepted(result.decode() if isinstance(result, bytes) else str(result), True)

    # -- worker side ---------------------------------------------------------------------------
    def load(self, delivery_id: str) -> dict[str, Any] | None:
        raw = self.client.hgetall(record_key(delivery_id))
        if not raw:
            return None
        return {k.decode(): v for k, v in raw.items()}

    def reap(self, limit: int = 200) -> list[str]:
        """Re-enqueue due, unleased, unfinished deliveries; returns their ids."""
        now = time.time()
        claimed = self._claim_due(keys=[PENDING, self.queue],
                                  args=[now, now + self.redeliver_after, limit])
        ids = [claimed[i].decode() for i in range(0, len(claimed), 2)]
        if ids:
            pipe = self.client.pipeline(transaction=False)
            for did, n in zip(ids, claimed[1::2]):
                # kombu keys its unacked set by delivery tag, so every copy needs its own.
                pipe.lpush(self.queue, celery_message(did, self.queue, did, tag=f"{did}-r{n}"))
            pipe.execute()
        return ids

    def requeue(self, delivery_id: str) -> None:
        """Run a recorded delivery again (an operator's decision): clear its per-handler marks,
        mark it queued and publish a fresh message."""
        key = record_key(delivery_id)
        handled = [f for f in self.client.hkeys(key) if f.startswith(b"handled:")]
        n = self.client.hincrby(key, "redeliveries", 1)
        pipe = self.client.pipeline(transaction=True)
        if handled:
            pipe.hdel(key, *handled)
        pipe.hset(key, mapping={"status": "queued", "attempts": 0})
        pipe.zadd(PENDING, {delivery_id: time.time() + self.redeliver_after})
        pipe.lpush(self.queue, celery_message(delivery_id, self.queue, delivery_id,
                                              tag=f"{delivery_id}-r{n}"))
        pipe.execute()

    def finish(self, delivery_id: str, status: str, **fields: Any) -> None:
        """Mark a delivery processed (done, invalid or dead) and stop redelivering it."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(record_key(delivery_id), mapping={"status": status, "finished": repr(time.time()),
                                                    **fields})
        pipe.zrem(PENDING, delivery_id)
        pipe.expire(record_key(delivery_id), self.retention)
        pipe.execute()

    def recent(self, limit: int = 50, since: float | None = None) -> list[dict[str, Any]]:
        """Newest deliveries first, without their bodies (for `replay --list` and audit)."""
        ids = self.client.zrevrangebyscore(LOG, "+inf", since or "-inf", start=0, num=limit)
        out = []
        for raw_id in ids:
            did = raw_id.decode()
            fields = self.client.hmget(record_key(did), "event", "status", "received",
                                       "idempotency_key", "attempts")
            if fields[0] is None:
                continue
            out.append({"delivery_id": did, "event": fields[0].decode(),
                        "status": fields[1].decode(), "received": float(fields[2]),
                        "idempotency_key": fields[3].decode(), "attempts": int(fields[4] or 0)})
        return out


def record_key(delivery_id: str) -> str:
    return PREFIX + "inbox:" + delivery_id


def lease_key(delivery_id: str) -> str:
    return PREFIX + "lease:" + delivery_id
