"""Reference WSGI apps for the intake bench, served by the same gunicorn config as the receiver.

* `bare()`: Flask answering 200 on the webhook path (it reads the body, as any HTTP/1.1 server
  must before answering on a connection). The floor: gunicorn + Flask and nothing else.
* `parse_lpush()`: + X-Gitlab-Token check (constant time), orjson parse of the body, and one
  Redis LPUSH of the raw body. The minimum a durable receiver needs.
* `celery_publish()`: + token check, parse, and publishing the delivery through Celery's
  `send_task` (what `.delay()` does underneath), with the raw body as the task argument.

Environment: WEBHOOK_SECRET, REDIS_URL (redis-py form: redis:// or unix://), TASK_QUEUE.
"""

from __future__ import annotations

import hmac
import os

import orjson
from flask import Flask, Response, request

PATH = "/webhooks/gitlab"


def _app() -> Flask:
    app = Flask("intake_bench")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', status=200, mimetype="application/json")

    return app


def _token_ok(secret: bytes) -> bool:
    given = (request.headers.get("X-Gitlab-Token") or "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, secret)


def _refused(code: int) -> Response:
    return Response(b'{"status":"refused"}', status=code, mimetype="application/json")


def bare() -> Flask:
    app = _app()

    @app.post(PATH)
    def receive() -> Response:
        request.get_data(cache=False)
        return Response(b"ok", status=200, mimetype="text/plain")

    return app


def parse_lpush() -> Flask:
    import redis

    app = _app()
    secret = os.environ["WEBHOOK_SECRET"].encode()
    queue = os.environ.get("TASK_QUEUE", "devops-agent")
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2,
                                  socket_connect_timeout=1)

    @app.post(PATH)
    def receive() -> Response:
        if not _token_ok(secret):
            return _refused(401)
        body = request.get_data(cache=False)
        payload = orjson.loads(body)
        if not isinstance(payload, dict):
            return _refused(400)
        client.lpush(queue, body)
        return Response(b'{"status":"queued"}', status=202, mimetype="application/json")

    return app


def celery_publish() -> Flask:
    from celery import Celery

    app = _app()
    secret = os.environ["WEBHOOK_SECRET"].encode()
    queue = os.environ.get("TASK_QUEUE", "devops-agent")
    broker = os.environ["REDIS_URL"]
    if broker.startswith("unix://"):
        broker = broker.replace("unix://", "redis+socket://", 1)
    celery = Celery("intake_bench", broker=broker)
    celery.conf.update(result_backend=None, task_ignore_result=True, task_default_queue=queue,
                       task_serializer="json", accept_content=["json"],
                       broker_connection_retry_on_startup=True, task_send_sent_event=False)

    @app.post(PATH)
    def receive() -> Response:
        if not _token_ok(secret):
            return _refused(401)
        body = request.get_data(cache=False)
        payload = orjson.loads(body)
        if not isinstance(payload, dict):
            return _refused(400)
        result = celery.send_task("intake_bench.process_event",
                                  args=[request.headers.get("X-Gitlab-Event", ""), body.decode()],
                                  queue=queue)
        return Response(orjson.dumps({"status": "queued", "task_id": result.id}), status=202,
                        mimetype="application/json")

    return app
