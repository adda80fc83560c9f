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

from tasks.adapters.gitlab import GitLabError, GitLabUnavailable, RateLimited
from tasks.adapters.kube import KubeError
from tasks.store import Busy

Kind = Literal["transient", "permanent", "bug"]


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    retry_after: float | None = None


def classify(exc: BaseException) -> Verdict:


    if isinstance(exc, RateLimited):
        return Verdict("transient", str(exc), exc.retry_after)
    if isinstance(exc, GitLabUnavailable):
        return Verdict("transient", str(exc))
    if isinstance(exc, GitLabError):
        if exc.status is not None and 400 <= exc.status < 500:
            return Verdict("permanent", str(exc))
        return Verdict("transient", str(exc))
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return Verdict("transient", f"Redis: {type(exc).__name__}")
    if isinstance(exc, redis.OutOfMemoryError):
        return Verdict("transient", "Redis is full (maxmemory): waiting for retention to free it")
    if isinstance(exc, Busy):
        return Verdict("transient", str(exc))
    kube = _kube_verdict(exc)
    if kube is not None:
        return kube
    return Verdict("bug", f"{type(exc).__name__}: {exc}"[:500])


def _kube_verdict(exc: BaseException) -> Verdict | None:

    if isinstance(exc, KubeError):
        return Verdict("transient" if exc.transient else "permanent", str(exc))
    return None
