"""`devops-agent serve`: the supervisor of one machine's processes.

With no REDIS_URL it starts a private redis-server in the data dir (append-only file, unix
socket), then gunicorn and one worker, and restarts any of them that dies: with the inbox and
the append-only file, a SIGKILL of any process loses no acknowledged delivery. With REDIS_URL
set it uses that Redis instead.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from tasks.ci.rules import load_table
from tasks.config.agent import load_config
from tasks.config.settings import ConfigError, load_settings
from tasks.platform.logs import configure_logging
from tasks.platform.redis_server import RedisServer

log = logging.getLogger("devops_agent.serve")


def _die_with_parent() -> None:
    """Children get SIGTERM if `serve` itself is killed, so nothing is left orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: children may outlive a SIGKILLed parent
        pass


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, preexec_fn=_die_with_parent)
        log.info("started %s", self.name, extra={"pid": self.proc.pid})

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def supervise(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.secret_values())
    try:  # refuse to start with a broken configuration or rules table, before spawning anything
        load_config(settings.config_file)
        load_table(settings.rules_file)
    except Exception as exc:  # noqa: BLE001 - ConfigError, RulesError: reported the same way
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    args.host = args.host or settings.host or "127.0.0.1"  # gunicorn alone: 0.0.0.0 (a container)
    args.port = args.port or settings.port
    args.web_workers = args.web_workers or settings.web_concurrency
    args.concurrency = args.concurrency or settings.worker_concurrency
    data_dir = (args.data_dir or settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    redis_server = None
    if not settings.redis_url:
        redis_server = RedisServer(data_dir / "redis", unix_socket=True,
                                   maxmemory=settings.redis_maxmemory,
                                   appendfsync=settings.redis_appendfsync)
        redis_server.start()
        env["REDIS_URL"] = redis_server.client_url()
        log.info("embedded Redis started", extra={"data_dir": str(data_dir / "redis")})
    metrics_dir = data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env["HOST"], env["PORT"] = args.host, str(args.port)
    children = [
        Child("web", [sys.executable, "-m", "gunicorn", "-c", "python:webhooks.gunicorn_conf",
                      "--workers", str(args.web_workers), "webhooks.app:create_app()"], env),
        Child("worker", [sys.executable, "-m", "tasks.cli.main", "worker",
                         "--concurrency", str(args.concurrency)], env),
    ]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for child in children:
        child.start()
    print(f"devops-agent: listening on http://{args.host}:{args.port}/webhooks/gitlab "
          f"(data in {data_dir}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            if redis_server is not None and redis_server.proc and redis_server.proc.poll() is not None:
                log.error("embedded Redis died; restarting it from its append-only file")
                redis_server.start()
            for child in children:
                if not child.alive():
                    child.restarts += 1
                    log.error("%s exited (code %s); restarting", child.name,
                              child.proc.returncode if child.proc else None)
                    time.sleep(min(5.0, 0.2 * child.restarts))
                    child.start()
    finally:
        for child in reversed(children):
            child.stop()
        if redis_server is not None:
            redis_server.stop()
    return 0
