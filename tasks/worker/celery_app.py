"""The Celery app, configured from the environment (REDIS_URL is broker and state store).

`celery -A tasks.worker.celery_app worker` works as well as `devops-agent worker`; the receiver never
imports this module (it publishes the task message itself, see tasks/intake/inbox.py).
"""

from __future__ import annotations

from celery import Celery

from tasks.config.settings import load_settings
from tasks.intake.inbox import TASK_NAME
from tasks.worker.transport import broker_url_for

app = Celery("devops_agent", include=["tasks.worker.shells"])


def configure(broker_url: str | None = None, queue: str | None = None,
              visibility_timeout: int | None = None) -> Celery:
    if broker_url is None or queue is None or visibility_timeout is None:
        # `celery -A tasks.worker.celery_app` (and the import below) has only the environment.
        settings = load_settings(require_secret=False)
        broker_url = broker_url or settings.redis_url
        queue = queue or settings.task_queue
        visibility_timeout = visibility_timeout or settings.visibility_timeout_seconds
    broker = broker_url or "redis://127.0.0.1:6379/0"
    # redis-py spells a unix socket unix://, kombu redis+socket://
    broker = broker.replace("unix://", "redis+socket://", 1) if broker.startswith("unix://") else broker
    queue = queue or "devops-agent"
    broker, transport = broker_url_for(broker)
    app.conf.update(
        broker_url=broker,
        broker_transport=transport,
        result_backend=None,
        task_ignore_result=True,
        task_default_queue=queue,
        task_routes={TASK_NAME: {"queue": queue}},
        task_serializer="json",
        accept_content=["json"],
        # At-least-once: a task is acknowledged only after it finished, and a worker that dies
        # mid-task hands the message back. Handlers are idempotent, so a re-run is harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # The inbox reaper redelivers within seconds; this is only the backstop for messages in
        # kombu's unacked set, and must exceed the longest task (long waits re-schedule instead).
        broker_transport_options={"visibility_timeout": visibility_timeout},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


configure()
