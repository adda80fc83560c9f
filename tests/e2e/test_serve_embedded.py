"""`devops-agent serve` on the embedded default: no REDIS_URL, everything in the data dir.

Each process it runs (worker, embedded redis-server, gunicorn) is SIGKILLed while a delivery is
in flight, and the delivery is still processed exactly once.
"""

from __future__ import annotations

import signal
import sys

import orjson
import psutil
import pytest
import redis as redis_lib
import requests

from tasks.intake.inbox import record_key
from tasks.platform.redis_server import free_port
from tasks.worker.context import delivery_decisions
from tests.support.procs import Proc, base_env, post_delivery, wait_until


def slow_delivery(n: int) -> bytes:
    return orjson.dumps({"object_kind": "deployment", "status": "success",
                         "environment": "slow-crash-test", "project": {"id": 15},
                         "ref": "main", "sha": f"{n:040d}"})


def children_matching(parent: int, needle: str) -> list[psutil.Process]:
    out = []
    for p in psutil.Process(parent).children(recursive=True):
        try:
            if needle in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = base_env(None, EXTRA_HANDLER_MODULES="tests.support.slow_handler")
    data = tmp_path / "data"
    proc = Proc([sys.executable, "-m", "tasks.cli.main", "serve", "--port", str(port),
                 "--data-dir", str(data), "--web-workers", "1", "--concurrency", "1"],
                env, tmp_path / "serve.log").start()
    url = f"http://127.0.0.1:{port}"

    def ready():
        if proc.proc.poll() is not None:
            raise AssertionError(proc.log()[-3000:])
        try:
            return requests.get(url + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, timeout=30, what="serve to be ready")
    wait_until(lambda: "ready." in proc.log(), timeout=30, what="the worker to be ready")
    client = redis_lib.Redis(unix_socket_path=str(data / "redis" / "redis.sock"))
    yield {"url": url, "proc": proc, "redis": client, "data": data}
    proc.stop()
    assert proc.proc.returncode is not None


def processed_once(client, delivery_id):
    status = client.hget(record_key(delivery_id), "status")
    return status == b"done"


def send_and_wait_started(served, n):
    r = post_delivery(served["url"], slow_delivery(n), "Deployment Hook", key=f"serve-{n}")
    assert r.status_code == 202, r.text
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: served["redis"].get(f"test:slow-started:{delivery_id}"), timeout=20,
               what="the slow handler to start")
    return delivery_id


def assert_done_once(served, delivery_id):
    try:
        wait_until(lambda: processed_once(served["redis"], delivery_id), timeout=45,
                   what="the delivery to be processed after the crash")
    except AssertionError:
        raise AssertionError(served["proc"].log()[-4000:]) from None
    runs = [d for d in delivery_decisions(served["redis"], delivery_id)
            if d["handler"] == "slow_test_handler"]
    assert len(runs) == 1


def test_embedded_default_survives_sigkill_of_each_process(served):
    serve_pid = served["proc"].proc.pid
    redis_dir = served["data"] / "redis"
    # Redis 6 writes appendonly.aof, Redis 7 a multi-part appendonlydir/
    assert (redis_dir / "appendonly.aof").exists() or (redis_dir / "appendonlydir").is_dir()

    # 1. the worker (its parent process; Celery's pool children die with it)
    d1 = send_and_wait_started(served, 1)
    for p in children_matching(serve_pid, "tasks.cli.main worker"):
        p.send_signal(signal.SIGKILL)
    assert_done_once(served, d1)

    # 2. the embedded redis-server, with a delivery in flight
    d2 = send_and_wait_started(served, 2)
    [redis_proc] = children_matching(serve_pid, "redis-server")
    redis_proc.send_signal(signal.SIGKILL)
    wait_until(lambda: children_matching(serve_pid, "redis-server"), timeout=20,
               what="serve to restart redis")
    wait_until(lambda: _ping(served["redis"]), timeout=20, what="redis to answer again")
    assert_done_once(served, d2)

    # 3. gunicorn's master: serve restarts it and deliveries are accepted again
    [web] = [p for p in children_matching(serve_pid, "gunicorn") if p.ppid() == serve_pid]
    web.send_signal(signal.SIGKILL)
    wait_until(lambda: _accepts(served["url"]), timeout=30, what="the receiver to come back")


def _ping(client) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


def _accepts(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
