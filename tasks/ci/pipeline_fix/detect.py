"""Noticing that one job keeps failing for one infrastructure reason.

Each failed job that the classifier put in an infrastructure category (with high confidence) is
recorded under (project, job name, GitLab's failure reason), with when and where it failed. When
`threshold` failures of one reason fall within `window_days`, a change is asked for:

* a failure reason that GitLab's `retry:when` can name (runner system failures, API and
  scheduler failures, stuck jobs, ...) asks for `retry:` with that reason;
* `job_execution_timeout` asks for a raised `timeout:`;
* `script_failure` (a network error inside the script, say) asks for nothing: `retry:when`
  cannot tell it from a failing test, both are `script_failure`, so a `retry:` would retry real
  failures too. The comment says so instead.

Bounded: per (project, job, reason) at most MAX_FAILURES entries, none older than the window,
and the keys expire a day after the window.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

MAX_FAILURES = 100
STATUS_TTL = 30 * 86400

# The values doc/ci/yaml/_index.md#retrywhen documents that name a failure of the platform, not
# of the script (`script_failure`) or of the job's own time limit (`job_execution_timeout`,
# which a raised timeout answers, not a second run of the same length).
RETRY_REASONS = ("runner_system_failure", "api_failure", "stuck_or_timeout_failure",
                 "scheduler_failure", "data_integrity_failure", "unknown_failure",
                 "unmet_prerequisites")
TIMEOUT_REASONS = ("job_execution_timeout",)
# GitLab's newer, more specific reasons and the retry:when value that covers them.
ALIASES = {
    "stuck_pending_with_matching_runners": "stuck_or_timeout_failure",
    "stuck_pending_no_matching_runners": "stuck_or_timeout_failure",
    "no_updates_running": "stuck_or_timeout_failure",
    "no_updates_canceling": "stuck_or_timeout_failure",
    "server_timeout_running": "job_execution_timeout",
    "server_timeout_canceling": "job_execution_timeout",
    "job_execution_server_timeout": "job_execution_timeout",
}
NOT_EXPRESSIBLE = ("script_failure",)

# KEYS: failures zset, details hash. ARGV: member, now, window, cap, ttl, details JSON.
# Returns [1 if this failure is new, failures in the window].
_RECORD = """
local fresh = redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
if fresh == 1 then redis.call('HSET', KEYS[2], ARGV[1], ARGV[6]) end
local cutoff = '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3]))
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)) do
  redis.call('HDEL', KEYS[2], m)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local n = redis.call('ZCARD', KEYS[1])
local cap = tonumber(ARGV[4])
if n > cap then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, n - cap - 1)) do
    redis.call('HDEL', KEYS[2], m)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {fresh, redis.call('ZCARD', KEYS[1])}
"""


def normalise(reason: str | None) -> str | None:
    if not reason:
        return None
    return ALIASES.get(reason, reason)


def kind_of(reason: str | None) -> str | None:
    """The change a failure reason asks for: "retry", "timeout", or None."""
    reason = normalise(reason)
    if reason in RETRY_REASONS:
        return "retry"
    if reason in TIMEOUT_REASONS:
        return "timeout"
    return None


def job_digest(job_name: str) -> str:
    """Job names may hold anything (spaces, colons, `-->`): keys and markers use a digest."""
    return hashlib.sha256(job_name.encode()).hexdigest()[:12]


class FixHistory:
    """Per (project, job, reason): the failures in the window, and what was done about them."""

    def __init__(self, redis: Any, clock: Any = time.time) -> None:
        self.r = redis
        self.clock = clock
        self._record = redis.register_script(_RECORD)

    @staticmethod
    def _keys(project: int, job_name: str, reason: str) -> tuple[str, str]:
        base = f"da:pfix:{project}:{job_digest(job_name)}:{reason}"
        return base + ":at", base + ":info"

    def record(self, project: int, job_name: str, reason: str, job_id: int,
               details: dict[str, Any], window: int) -> tuple[bool, int]:
        """(new, failures in the window); the same job id counts once however often heard of."""
        now = self.clock()
        at, info = self._keys(project, job_name, reason)
        fresh, count = self._record(keys=[at, info], args=[
            job_id, now, window, MAX_FAILURES, window + 86400,
            orjson.dumps({**details, "job": job_id, "at": now})])
        return bool(fresh), int(count)

    def failures(self, project: int, job_name: str, reason: str, window: int) -> list[dict]:
        """The failures in the window, oldest first."""
        at, info = self._keys(project, job_name, reason)
        ids = self.r.zrangebyscore(at, self.clock() - window, "+inf")
        if not ids:
            return []
        rows = self.r.hmget(info, ids)
        return [orjson.loads(raw) for raw in rows if raw]

    def reasons(self, project: int, job_name: str, kind: str, window: int,
                threshold: int) -> dict[str, list[dict]]:
        """The reasons of `kind` that reached the threshold, with their failures."""
        candidates = RETRY_REASONS if kind == "retry" else TIMEOUT_REASONS
        out = {}
        for reason in candidates:
            found = self.failures(project, job_name, reason, window)
            if len(found) >= threshold:
                out[reason] = found
        return out

    # -- what the comment says about it ---------------------------------------------------------
    @staticmethod
    def _status_key(project: int, job_name: str) -> str:
        return f"da:pfix:status:{project}:{job_digest(job_name)}"

    def set_status(self, project: int, job_name: str, kind: str, status: dict[str, Any]) -> None:
        key = self._status_key(project, job_name)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, kind, orjson.dumps({**status, "at": self.clock()}))
        pipe.expire(key, STATUS_TTL)
        pipe.execute()

    def status(self, project: int, job_name: str, kind: str) -> dict[str, Any] | None:
        raw = self.r.hget(self._status_key(project, job_name), kind)
        return orjson.loads(raw) if raw else None
