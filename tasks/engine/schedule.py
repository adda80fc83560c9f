"""The one engine that decides when work runs, and when it runs again.

Three kinds of work share it: deliveries (`d:<id>`, recorded by the receiver), deploy steps
(`s:<deploy id>`) and follow-on jobs (`j:<id>`, such as filing a fix issue), plus periodic work
(`p:<name>`, reconciling after downtime). Each item has a small state hash and one member in one
sorted set, `da:schedule`, scored by when the engine should next look at it:

    queued    a message is in the broker; looked at again after `lost_after` seconds, when it
              is re-sent only if nobody holds its lease and the queue has drained (a message
              waiting behind a backlog is not lost, and re-sending it would only add work)
    running   a worker holds its lease (renewed while it works); a lease that lapsed means the
              worker died, and the item is re-sent at once
    waiting   backing off or paused until its time (a retry after an error, a deploy step's
              next poll); re-sent when due
    done / invalid / dead / failed: finished, dropped from the schedule

The scheduler loop (every worker runs one; the claim is one Lua script, so an item is sent once
whatever the number of workers) sends a task message for each item it claims. One back-off
policy (`backoff`) and one attempt budget (`MAX_ATTEMPTS`) apply to every kind. Messages carry
only an id: the task re-reads the item's state and does nothing if the item is finished, not
due yet, or leased by another worker, so a duplicate message (the broker's own redelivery of an
unacknowledged task after `visibility_timeout`, a crash between claim and send) is harmless.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.engine.messages import task_message

log = logging.getLogger("devops_agent.schedule")

SCHEDULE = "da:schedule"
MAX_ATTEMPTS = 5
BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
FINISHED = ("done", "invalid", "dead", "failed")

# Task names by item kind (the worker registers them in tasks/worker/shells.py).
TASKS = {"d": "devops_agent.process_event", "s": "devops_agent.advance_deploy",
         "j": "devops_agent.run_job", "p": "devops_agent.run_periodic"}


def state_key(member: str) -> str:
    kind, _, ident = member.partition(":")
    if kind == "d":
        return "da:inbox:" + ident  # the receiver's record is the delivery's state
    return f"da:item:{member}"


def lease_key(member: str) -> str:
    return "da:lease:" + member


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: doubling from BACKOFF_BASE, capped, with jitter so
    failures that happened together do not retry together; at least `retry_after` (429)."""
    delay = min(BACKOFF_MAX, BACKOFF_BASE * (2 ** max(0, attempt - 1)))
    delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
    return max(delay, retry_after or 0.0)


# KEYS: schedule, queue. ARGV: now, lost_after, limit.
# Returns the members to send now; each was moved to `queued` and rescheduled for its lost-check.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local later = tonumber(ARGV[1]) + tonumber(ARGV[2])
local backlog = redis.call('LLEN', KEYS[2]) > 0
local out = {}
for _, member in ipairs(due) do
  local kind, ident = string.match(member, '^(%a):(.+)$')
  local key
  if kind == 'd' then key = 'da:inbox:' .. ident else key = 'da:item:' .. member end
  local status = redis.call('HGET', key, 'status')
  if status == false or status == 'done' or status == 'invalid' or status == 'dead'
      or status == 'failed' then
    redis.call('ZREM', KEYS[1], member)
  elseif redis.call('EXISTS', 'da:lease:' .. member) == 1 then
    redis.call('ZADD', KEYS[1], later, member)
  elseif status == 'queued' and backlog then
    redis.call('ZADD', KEYS[1], later, member)
  else
    redis.call('HSET', key, 'status', 'queued', 'published', ARGV[1])
    redis.call('HINCRBY', key, 'sends', 1)
    redis.call('ZADD', KEYS[1], later, member)
    out[#out + 1] = member
  end
end
return out
"""

# KEYS: state, schedule. ARGV: member, status, at. Moves an item to waiting/queued at `at`,
# unless it finished (or its state is gone: an item without state is no item) meanwhile.
_RESCHEDULE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == false or status == 'done' or status == 'invalid' or status == 'dead'
    or status == 'failed' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'next_at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

_RENEW = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
          "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0")
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Lease:
    """One worker's hold on an item while it works on it, renewed by a background thread."""

    def __init__(self, client: Any, member: str, ttl: float) -> None:
        self.client, self.key = client, lease_key(member)
        self.token = uuid.uuid4().hex
        self.ttl_ms = max(100, int(ttl * 1000))
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
            except Exception:  # a missed renewal only risks a harmless re-run
                log.warning("lease renewal failed", exc_info=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except Exception:  # it lapses by itself
            log.warning("lease release failed", exc_info=True)


@dataclass
class Schedule:
    """The engine's operations; `client` is the broker's Redis (state and queue live together)."""

    client: Any
    queue: str
    lost_after: float = 15.0
    lease_ttl: float = 30.0

    def __post_init__(self) -> None:
        self._claim = self.client.register_script(_CLAIM)
        self._reschedule = self.client.register_script(_RESCHEDULE)

    # -- creating and sending --------------------------------------------------------------------
    def add(self, member: str, at: float | None = None, fields: dict[str, Any] | None = None,
            send_now: bool = False) -> None:
        """Create (or reset) an item's state and schedule it. With `send_now` the message is
        sent at once (lower latency than waiting for the scheduler's next pass)."""
        now = time.time()
        pipe = self.client.pipeline(transaction=True)
        state = {"status": "queued" if send_now else "waiting", "next_at": repr(at or now),
                 **(fields or {})}
        pipe.hset(state_key(member), mapping=state)
        pipe.zadd(SCHEDULE, {member: (now + self.lost_after) if send_now else (at or now)})
        if send_now:
            pipe.hset(state_key(member), "published", repr(now))
            pipe.lpush(self.queue, self.message(member))
        pipe.execute()

    def add_new(self, member: str, fields: dict[str, Any] | None = None, at: float | None = None,
                send_now: bool = True) -> bool:
        """Create an item only if it does not exist yet (keyed by what it acts on, so the same
        follow-on job asked for twice runs once); returns whether it was created."""
        created = self.client.hsetnx(state_key(member), "created", repr(time.time()))
        if not created:
            return False
        self.add(member, at=at, fields=fields, send_now=send_now)
        return True

    def ensure(self, member: str, at: float | None = None) -> bool:
        """Schedule a periodic item unless it is already scheduled (every worker calls this at
        start; the first one wins and the schedule then lives in Redis, run once across workers)."""
        if self.client.zscore(SCHEDULE, member) is not None:
            return False
        self.add(member, at=at, send_now=False)  # two workers racing here write the same thing
        return True

    def message(self, member: str, tag: str | None = None) -> bytes:
        kind, _, ident = member.partition(":")
        return task_message(TASKS[kind], [ident], self.queue, tag=tag)

    def send_due(self, limit: int = 200, now: float | None = None) -> list[str]:
        """The scheduler's pass: claim every due item and send its message."""
        now = time.time() if now is None else now
        claimed = [m.decode() if isinstance(m, bytes) else m for m in
                   self._claim(keys=[SCHEDULE, self.queue], args=[now, self.lost_after, limit])]
        if claimed:
            pipe = self.client.pipeline(transaction=False)
            for member in claimed:
                # kombu keys its unacked set by delivery tag: every send needs its own.
                pipe.lpush(self.queue, self.message(member, tag=f"{member}-{uuid.uuid4().hex[:8]}"))
            pipe.execute()
        return claimed

    # -- what a task does with its item ------------------------------------------------------------
    def lease(self, member: str) -> Lease | None:
        lease = Lease(self.client, member, self.lease_ttl)
        return lease if lease.acquire() else None

    def state(self, member: str) -> dict[str, str]:
        raw = self.client.hgetall(state_key(member))
        return {k.decode(): v.decode(errors="replace") for k, v in raw.items()}

    def running(self, member: str) -> int:
        """Mark the item running; returns its attempt number (1 for the first run)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(state_key(member), "status", "running")
        pipe.hincrby(state_key(member), "attempts", 1)
        # While it runs, the lease says it is alive; the schedule looks again when it may lapse.
        pipe.zadd(SCHEDULE, {member: time.time() + self.lease_ttl})
        return int(pipe.execute()[1])

    def again(self, member: str, delay: float, status: str = "waiting", **fields: Any) -> bool:
        """Run the item again after `delay` seconds (a back-off, or a deploy's next poll)."""
        moved = bool(self._reschedule(keys=[state_key(member), SCHEDULE],
                                      args=[member, status, time.time() + max(0.0, delay)]))
        if moved and fields:
            self.client.hset(state_key(member), mapping=fields)
        return moved

    def finish(self, member: str, status: str, ttl: int | None = None, **fields: Any) -> None:
        """Finished for good: `done`, `invalid` (bad input), `failed` (refused for good) or
        `dead` (out of attempts). The state stays `ttl` seconds for `deliveries` and replay."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(state_key(member), mapping={"status": status, "finished": repr(time.time()),
                                              **fields})
        pipe.zrem(SCHEDULE, member)
        if ttl:
            pipe.expire(state_key(member), ttl)
        pipe.execute()


def due_now(state: dict[str, str], now: float | None = None) -> bool:
    """Whether an item's message may run now: not finished, and not backing off until later
    (a duplicate message for a waiting item is dropped; the engine sends it when due)."""
    if state.get("status") in FINISHED:
        return False
    if state.get("status") == "waiting":
        try:
            return float(state.get("next_at") or 0) <= (time.time() if now is None else now) + 0.5
        except ValueError:
            return True
    return True


def start_scheduler(schedule: Schedule, period: float, on_pass: Callable[[], None] | None = None,
                    stop: threading.Event | None = None) -> threading.Thread:
    """The loop every worker runs: send what is due, a few times per `lost_after`."""
    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            try:
                sent = schedule.send_due()
                if sent:
                    log.info("sent %d due item(s)", len(sent), extra={"items": sent[:20]})
                if on_pass is not None:
                    on_pass()
            except Exception:  # keep scheduling; Redis may be restarting
                log.warning("scheduler pass failed", exc_info=True)

    thread = threading.Thread(target=loop, name="scheduler", daemon=True)
    thread.start()
    return thread
