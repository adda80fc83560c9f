"""What a handler gets: settings, Redis, the decision log, and its adapters as plain attributes.

The worker's composition root (tasks/wiring) builds the real adapters once per process and hands
them in; tests hand recording fakes through the same attributes. The Kubernetes client itself
still loads only when a deploy talks to a cluster (tasks/deploy/kube.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from tasks.config.settings import Settings
from tasks.platform import metrics

log = logging.getLogger("devops_agent.decisions")

MAX_DECISIONS = 200  # per delivery: a pipeline's jobs are capped well below this


def decisions_key(delivery_id: str) -> str:
    return f"da:decisions:{delivery_id}"


@dataclass
class HandlerContext:
    settings: Settings
    redis: redis.Redis
    delivery_id: str = ""
    handler: str = ""
    # Adapters, handed in: by tests (recording fakes), or by the worker's composition root
    # (tasks/wiring), which builds the real ones once per process.
    gitlab: Any = None
    deployer: Any = None
    rules: Any = None
    config: Any = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    # What the receiver recorded with the delivery (e.g. which secret binding accepted it).
    meta: dict[str, Any] = field(default_factory=dict)
    # The delivery's project as GitLab's API describes it, once read (tasks/gitlab/facts.py).
    project: Any = None
    # Tests collect follow-on jobs here; the worker runtime sends them through the engine.
    enqueued: list[tuple[str, dict[str, Any], str | None]] | None = None
    jobs: Any = None

    def enqueue(self, task_name: str, kwargs: dict[str, Any], key: str | None = None) -> None:
        """Ask for a follow-on job by name, once per `key` (what it acts on); the worker that
        runs it re-fetches what it needs."""
        if self.enqueued is not None:
            self.enqueued.append((task_name, kwargs, key))
            return
        if self.jobs is None:
            raise RuntimeError("this context has no job engine to send follow-on work to")
        self.jobs(task_name, kwargs, key)

    def decide(self, action: str, **details: Any) -> dict[str, Any]:
        """Record what a handler decided and why: logged, and kept with the delivery."""
        entry = {"handler": self.handler, "action": action, "at": round(time.time(), 3),
                 "dry_run": self.settings.dry_run, **details}
        self.decisions.append(entry)
        if self.delivery_id:
            key = decisions_key(self.delivery_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.rpush(key, orjson.dumps(entry, default=str))
            pipe.ltrim(key, -MAX_DECISIONS, -1)
            # Kept as long as the delivery's record, which `deliveries` shows them with.
            pipe.expire(key, self.settings.inbox_retention_seconds)
            pipe.execute()
        log.info("decision: %s", action, extra={"decision": entry})

        metrics.DECISIONS.labels(handler=self.handler or "none", action=action).inc()
        return entry


def delivery_decisions(client: redis.Redis, delivery_id: str) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in client.lrange(decisions_key(delivery_id), 0, -1)]
