"""Real gunicorn + real Redis + real Celery worker processes, end to end."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import orjson
import pytest
import redis as redis_lib
import requests

from tasks.cli.replay import HEADER_FOR_OBJECT_KIND
from tasks.intake.inbox import record_key
from tasks.platform.handlers import load_handlers
from tasks.worker.context import delivery_decisions
from tests.support.procs import base_env, post_delivery, start_web, start_worker, wait_until

FIXTURES = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "payloads").glob("*.json"))


@pytest.fixture
def stack(redis_server, redis_client, tmp_path):
    env = base_env(redis_server.client_url(),
                   EXTRA_HANDLER_MODULES="tests.support.slow_handler")
    web, url = start_web(env, tmp_path)
    worker = start_worker(env, tmp_path)
    yield {"url": url, "env": env, "web": web, "worker": worker, "tmp": tmp_path}
    worker.stop()
    web.stop()


def handlers_for(kind: str) -> int:
    registry = load_handlers(extra_modules=("tests.support.slow_handler",))
    return len(registry.for_kind(kind))


def status_of(client: redis_lib.Redis, delivery_id: str) -> str | None:
    raw = client.hget(record_key(delivery_id), "status")
    return raw.decode() if raw else None


def test_fixtures_exist():
    kinds = {orjson.loads(p.read_bytes())["object_kind"] for p in FIXTURES}
    assert kinds >= {"pipeline", "build", "merge_request", "issue", "note", "deployment"}


def test_every_fixture_runs_its_handlers_exactly_once_even_sent_five_times(stack, redis_client):
    deliveries = {}
    for path in FIXTURES:
        body = path.read_bytes()
        event = HEADER_FOR_OBJECT_KIND[orjson.loads(body)["object_kind"]]
        key = str(uuid.uuid4())
        answers = [post_delivery(stack["url"], body, event, key=key) for _ in range(5)]
        assert [a.status_code for a in answers] == [202, 200, 200, 200, 200], path.name
        ids = {a.json()["delivery_id"] for a in answers}
        assert len(ids) == 1
        deliveries[path.name] = (ids.pop(), event)
    for name, (delivery_id, _) in deliveries.items():
        wait_until(lambda did=delivery_id: status_of(redis_client, did) == "done", timeout=30,
                   what=f"{name} to be processed")
    for name, (delivery_id, event) in deliveries.items():
        from tasks.intake.kinds import kind_of

        decisions = delivery_decisions(redis_client, delivery_id)
        expected = handlers_for(kind_of(event))
        runs = [d["handler"] for d in decisions]
        # slow_test_handler decides nothing outside its test environment
        expected -= 1 if kind_of(event) == "deployment" else 0
        assert len(runs) == expected and len(set(runs)) == expected, (name, runs)
        assert int(redis_client.hget(record_key(delivery_id), "attempts")) == 1


def test_worker_sigkilled_mid_task_then_processed_after_restart(stack, redis_client):
    body = orjson.dumps({"object_kind": "deployment", "status": "success",
                         "environment": "slow-crash-test", "project": {"id": 15},
                         "ref": "main", "sha": "b" * 40})
    r = post_delivery(stack["url"], body, "Deployment Hook", key="crash-1")
    assert r.status_code == 202
    delivery_id = r.json()["delivery_id"]
    started = f"test:slow-started:{delivery_id}"
    wait_until(lambda: redis_client.get(started), what="the slow handler to start")
    stack["worker"].kill_group(signal.SIGKILL)  # the whole worker: parent and pool
    assert status_of(redis_client, delivery_id) != "done"
    worker2 = start_worker(stack["env"], stack["tmp"], name="worker-2")
    try:
        wait_until(lambda: status_of(redis_client, delivery_id) == "done", timeout=40,
                   what="the delivery to be processed by the restarted worker")
    finally:
        worker2.stop()
    decisions = [d for d in delivery_decisions(redis_client, delivery_id)
                 if d["handler"] == "slow_test_handler"]
    assert len(decisions) == 1
    assert int(redis_client.get(started)) == 2  # began twice, finished once


def test_chunked_body_over_the_limit_is_413_from_gunicorn(redis_server, redis_client, tmp_path):
    env = base_env(redis_server.client_url(), MAX_BODY_BYTES="10000")
    web, url = start_web(env, tmp_path, workers=1)
    try:
        def chunks():
            for _ in range(100):
                yield b" " * 1000
        r = requests.post(url + "/webhooks/gitlab", data=chunks(), timeout=10, headers={
            "X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": env["WEBHOOK_SECRET"],
            "Content-Type": "application/json"})
        assert r.status_code == 413
        assert r.json()["status"] == "refused"
        assert redis_client.llen("devops-agent") == 0
    finally:
        web.stop()


def test_broker_down_is_503_and_ready_probe_fails(redis_server, redis_client, tmp_path):
    from tasks.platform.redis_server import RedisServer

    own = RedisServer(tmp_path / "own-redis").start()
    env = base_env(own.client_url())
    web, url = start_web(env, tmp_path, workers=1)
    try:
        body = orjson.dumps({"object_kind": "pipeline", "object_attributes": {
            "id": 1, "status": "failed"}, "project": {"id": 1}})
        for n in range(30):  # acknowledged, then Redis is SIGKILLed at once
            assert post_delivery(url, body, "Pipeline Hook", key=f"k{n}").status_code == 202
        own.kill()
        r = post_delivery(url, body + b" ", "Pipeline Hook")
        assert r.status_code == 503
        assert requests.get(url + "/readyz", timeout=5).status_code == 503
        own.start()  # the append-only file brings back every acknowledged delivery
        client = redis_lib.Redis.from_url(own.client_url())
        assert client.llen("devops-agent") == 30
    finally:
        web.stop()
        own.stop()


def test_log_lines_are_json_with_delivery_context(stack, redis_client):
    body = orjson.dumps({"object_kind": "note", "object_attributes": {
        "id": 5, "note": "hi", "noteable_type": "Issue", "action": "create"},
        "project": {"id": 15}, "user": {"id": 1, "username": "a"}, "issue": {"iid": 3}})
    r = post_delivery(stack["url"], body, "Note Hook", key="log-key-1")
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: status_of(redis_client, delivery_id) == "done", what="processing")
    web_lines = [l for l in stack["web"].log().splitlines() if l.strip()]
    assert all(l.startswith("{") for l in web_lines), [l for l in web_lines if not l.startswith("{")][:3]
    lines = [orjson.loads(line) for line in web_lines if "log-key-1" in line]
    assert lines and all(l["event"] == "Note Hook" for l in lines)
    worker_lines = [orjson.loads(line) for line in stack["worker"].log().splitlines()
                    if line.startswith("{") and delivery_id in line
                    and '"logger":"devops_agent' in line]
    assert worker_lines and all(l.get("idempotency_key") == "log-key-1" for l in worker_lines)
    assert os.environ.get("WEBHOOK_SECRET", "e2e-secret-token") not in stack["web"].log()
