"""Starting a worker process (`devops-agent worker`): fail at once, not on the first task, when
the handlers, the configuration or the rules table is wrong; then run Celery, with the engine loop
(tasks/worker/engine_loop.py) and, with WORKER_METRICS_PORT, the metrics server started once the
worker is ready.

The command imports this module only after PROMETHEUS_MULTIPROC_DIR is set (tasks/cli/serve.py):
prometheus_client picks its storage once, when it is first imported.
"""

from __future__ import annotations

import argparse
import os
import sys

from celery.signals import worker_ready
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from tasks.ci.rules import load_table
from tasks.config.agent import load_config
from tasks.config.settings import Settings
from tasks.deploy.keys import migrate_legacy_keys
from tasks.platform.logs import configure_logging
from tasks.platform.sentry import init_sentry
from tasks.wiring.runtime import build_runtime
from tasks.worker.celery_app import configure
from tasks.worker.engine_loop import start_engine


def run(settings: Settings, args: argparse.Namespace, metrics_port: str | None) -> int:
    assert settings.redis_url  # the command refuses to start without one
    configure_logging(settings.log_level, settings.secret_values())
    init_sentry(settings, "worker")
    try:
        rt = build_runtime(settings)
        # Deploy state from before the `da:deploy:` prefix is renamed before any task runs, so
        # deploys in flight across the upgrade carry on (tasks/deploy/keys.py).
        migrate_legacy_keys(rt.redis)
        load_config(settings.config_file)
        if settings.rules_file is not None:
            load_table(settings.rules_file)
    except Exception as exc:  # noqa: BLE001 - any start-up error is reported the same way
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    app = configure(settings.redis_url.replace("unix://", "redis+socket://"), settings.task_queue,
                    settings.visibility_timeout_seconds)
    worker_ready.connect(lambda **_: start_engine(settings), weak=False)
    if metrics_port:
        worker_ready.connect(lambda **_: serve_metrics(int(metrics_port),
                                                       settings.worker_metrics_host), weak=False)
    app.worker_main([
        "worker", "--loglevel", settings.log_level, "-Q", settings.task_queue,
        "--concurrency", str(args.concurrency), "--pool", args.pool,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"devops-agent-{os.getpid()}@%h",
    ])
    return 0


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """The sum of the pool children's per-process files, served by the parent."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)
