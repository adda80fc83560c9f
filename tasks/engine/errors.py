"""Errors by kind: what the engine does when a handler, step or job raises.

* transient: GitLab or Kubernetes answered 5xx or 429, timed out or was unreachable, Redis hiccuped.
  The item runs again after the engine's back-off, never sooner than a 429's Retry-After.
* permanent: the request itself can never succeed: 401/403 (the bot lacks access), 404 (the
  object is gone), 409/422 (GitLab refuses it). Retrying changes nothing, so the item finishes
  `failed` with the reason, logged and counted; handlers that can say it where a person looks
  (the comment, the ChatOps reply) catch these themselves first.
* bug: anything else. Reported to Sentry with the delivery id, and retried within the budget
  (a bug may depend on state that changes); then the item is dead, visible in `deliveries`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import redis

Kind = Literal["transient", "permanent", "bug"]


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    retry_after: float | None = None


def classify(exc: BaseException) -> Verdict:
    # The adapters' errors say their own kind (`error_kind`, and `retry_after` for a 429), so
    # the engine depends on no feature or adapter.
    kind = getattr(exc, "error_kind", None)
    if kind in ("transient", "permanent"):
        return Verdict(kind, str(exc), getattr(exc, "retry_after", None))
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return Verdict("transient", f"Redis: {type(exc).__name__}")
    if isinstance(exc, redis.OutOfMemoryError):
        return Verdict("transient", "Redis is full (maxmemory): waiting for retention to free it")
    return Verdict("bug", f"{type(exc).__name__}: {exc}"[:500])
