"""gunicorn settings for the receiver:
`gunicorn -c python:webhooks.gunicorn_conf 'webhooks.app:create_app()'`."""

import os
import tempfile

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# An event loop per process that reads each request whole (head within HEADER_TIMEOUT_SECONDS,
# body within BODY_TIMEOUT_SECONDS) before the app runs, so slow or hostile clients cannot hold
# a worker, and that answers malformed requests with JSON (webhooks/worker.py).
worker_class = "webhooks.worker.BufferingWorker"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))
# GitLab waits 10 s for an answer; we answer in milliseconds or not at all.
timeout = 30
graceful_timeout = 10
keepalive = 5
# Request line and header limits (gunicorn's defaults); over them: 414 / 431, as JSON.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = None
# Each worker counts into its own files; /metrics sums them.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="devops-agent-metrics-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

# gunicorn's own lines (booting, worker exits) as JSON too, so one parser reads every line.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "tasks.platform.logs.JsonFormatter"}},
    # gunicorn merges this over its defaults, whose root logger names a "console" handler
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                             "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
