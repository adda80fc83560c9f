"""gunicorn settings for the receiver:
`gunicorn -c python:webhooks.gunicorn_conf 'webhooks.app:create_app()'`."""

import os
import sys
import tempfile

from tasks.config.settings import ConfigError, load_settings

try:
    # The same settings the app loads; a bad value stops gunicorn here with the same message
    # (the secret is checked by the app itself, in create_app).
    _settings = load_settings(require_secret=False)
except ConfigError as exc:
    print(f"devops-agent: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

# HOST unset: every interface (the container's entry point; `serve` passes 127.0.0.1).
bind = f"{_settings.host or '0.0.0.0'}:{_settings.port}"
workers = _settings.web_concurrency
# An event loop per process that reads each request whole (head within HEADER_TIMEOUT_SECONDS,
# body within BODY_TIMEOUT_SECONDS) before the app runs, so slow or hostile clients cannot hold
# a worker, and that answers malformed requests with JSON (webhooks/worker.py).
worker_class = "webhooks.worker.BufferingWorker"
worker_connections = _settings.worker_connections
# GitLab waits 10 s for an answer; we answer in milliseconds or not at all.
timeout = 30
graceful_timeout = 10
keepalive = 5
# Request line and header limits (gunicorn's defaults); over them: 414 / 431, as JSON.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = None
# Each worker counts into its own files; /metrics sums them. Read from os.environ, not the
# settings: it is prometheus_client's own variable, and it must be set before that library is
# first imported (in the workers), whatever else the settings say.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="devops-agent-metrics-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def child_exit(server, worker):
    # Lazy: prometheus_client picks its storage when first imported, and this file sets
    # PROMETHEUS_MULTIPROC_DIR above (at the top it would be imported before that).
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
