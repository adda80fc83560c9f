"""The worker's process-wide state, built once: settings, Redis, inbox, handlers, adapters.

Built lazily on the first task (after Celery forks its pool), so each child process gets its own
Redis connections and nothing is shared across a fork.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from tasks.config.settings import Settings, load_settings
from tasks.engine.schedule import Schedule
from tasks.intake.inbox import Inbox
from tasks.platform import metrics
from tasks.platform.handlers import Registry, load_handlers
from tasks.platform.store import redis_client
from tasks.wiring.adapters import default_factories
from tasks.worker.context import HandlerContext
from tasks.worker.jobs import job_member

log = logging.getLogger("devops_agent.runtime")


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    inbox: Inbox
    registry: Registry
    schedule: Schedule
    # name -> factory building an adapter on first use (gitlab, deployer, rules)
    factories: dict[str, Callable[[Runtime], Any]] = field(default_factory=dict)
    _built: dict[str, Any] = field(default_factory=dict)
    # re-entrant: a factory may ask for another adapter (the deployer needs the config)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def adapter(self, name: str) -> Any:
        with self._lock:
            if name not in self._built:
                factory = self.factories.get(name)
                self._built[name] = factory(self) if factory else None
            return self._built[name]

    def context(self, delivery_id: str, handler: str,
                meta: dict[str, Any] | None = None) -> HandlerContext:
        # The adapters are built once per process (on the first context) and handed in as
        # plain attributes: a handler sees what it is given, nothing is looked up behind it.
        return HandlerContext(settings=self.settings, redis=self.redis, delivery_id=delivery_id,
                              handler=handler, meta=dict(meta or {}), jobs=self.enqueue_job,
                              gitlab=self.adapter("gitlab"), deployer=self.adapter("deployer"),
                              rules=self.adapter("rules"), config=self.adapter("config"))

    def enqueue_job(self, task_name: str, kwargs: dict[str, Any], key: str | None = None) -> bool:
        """A follow-on job through the engine, keyed by what it acts on (`key`, else its
        arguments): asked for twice, it runs once. Returns whether it was new."""
        return self.schedule.add_new(job_member(task_name, kwargs, key), fields={
            "task": task_name, "kwargs": orjson.dumps(kwargs, default=str)})

    def metrics_event(self, kind: str, outcome: str) -> None:
        metrics.EVENTS_PROCESSED.labels(kind=kind, outcome=outcome).inc()

    def metrics_error(self, kind: str, error_kind: str) -> None:
        metrics.WORK_ERRORS.labels(kind=kind, error=error_kind).inc()


def build_runtime(settings: Settings, factories: dict[str, Callable[[Runtime], Any]] | None = None
                  ) -> Runtime:
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set (the embedded default is `devops-agent serve`)")
    client = redis_client(settings.redis_url)
    inbox = Inbox(client, queue=settings.task_queue, dedup_ttl=settings.dedup_ttl_seconds,
                  redeliver_after=settings.redeliver_after_seconds,
                  retention=settings.inbox_retention_seconds,
                  body_retention=settings.body_retention_seconds)
    registry = load_handlers(settings.handlers, settings.extra_handler_modules)
    schedule = Schedule(client, queue=settings.task_queue,
                        lost_after=settings.redeliver_after_seconds,
                        lease_ttl=settings.task_lease_seconds)
    return Runtime(settings=settings, redis=client, inbox=inbox, registry=registry,
                   schedule=schedule,
                   factories={**default_factories(), **(factories or {})})


@functools.cache
def runtime() -> Runtime:
    return build_runtime(load_settings(require_secret=False))
