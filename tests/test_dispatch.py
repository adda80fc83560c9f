"""process_delivery as a plain function over a real Redis: statuses, leases, retries, poison."""

from __future__ import annotations

import orjson
import pytest

from tasks.context import delivery_decisions
from tasks.dispatch import MAX_ATTEMPTS, Lease, process_delivery
from tasks.handlers import REGISTRY, HelpRecord, handler
from tasks.inbox import PENDING, record_key
from tasks.runtime import build_runtime
from tasks.settings import load_settings

NOTE = orjson.dumps({"object_kind": "note", "object_attributes": {
    "id": 5, "note": "hello", "noteable_type": "Issue", "action": "create"},
    "project": {"id": 15}, "user": {"id": 1, "username": "a"}, "issue": {"iid": 3}})

calls: list[str] = []


def _explodes(event, ctx):
    calls.append(event.object_attributes.note)
    if "boom" in event.object_attributes.note:
        raise RuntimeError("handler failure")
    ctx.decide("ok")


@pytest.fixture
def rt(redis_server, redis_client):
    calls.clear()
    handler("explodes_on_boom", kinds=("note",), help=HelpRecord(description="test only"))(_explodes)
    yield from _runtime(redis_server)
    REGISTRY.handlers.pop("explodes_on_boom", None)


def _runtime(redis_server):
    settings = load_settings({"REDIS_URL": redis_server.client_url(),
                              "HANDLERS": "chatops,explodes_on_boom",
                              "REDELIVER_AFTER_SECONDS": "0.2"}, require_secret=False)
    yield build_runtime(settings)


def accept(rt, body=NOTE, key=None):
    return rt.inbox.accept(event="Note Hook", kind="note", body=body, idempotency_key=key).delivery_id


def test_runs_each_active_handler_once_and_finishes(rt, redis_client):
    did = accept(rt)
    assert process_delivery(rt, did) == "done"
    assert [d["handler"] for d in delivery_decisions(redis_client, did)] == ["chatops", "explodes_on_boom"]
    assert redis_client.zscore(PENDING, did) is None
    # a redelivered copy of the task does nothing
    assert process_delivery(rt, did) == "already-done"
    assert calls == ["hello"]


def test_inactive_handlers_do_not_run(rt, redis_client):
    assert "pipeline_failed" in REGISTRY.handlers
    rt2 = build_runtime(load_settings({"REDIS_URL": rt.settings.redis_url, "HANDLERS": "chatops"},
                                      require_secret=False))
    did = accept(rt2)
    process_delivery(rt2, did)
    assert calls == []


def test_leased_delivery_is_left_to_its_holder(rt):
    did = accept(rt)
    lease = Lease(rt, did)
    assert lease.acquire()
    try:
        assert process_delivery(rt, did) == "leased"
    finally:
        lease.release()
    assert process_delivery(rt, did) == "done"


def test_invalid_payload_is_finished_as_invalid_not_retried(rt, redis_client):
    did = accept(rt, body=b'{"object_kind": "note", "object_attributes": {}}')
    assert process_delivery(rt, did) == "invalid"
    assert b"object_attributes" in redis_client.hget(record_key(did), "error")
    assert redis_client.zscore(PENDING, did) is None


def test_failed_handler_is_redelivered_and_finished_handlers_are_not_rerun(rt, redis_client):
    body = NOTE.replace(b"hello", b"boom")
    did = accept(rt, body=body)
    with pytest.raises(RuntimeError):
        process_delivery(rt, did)
    assert redis_client.hget(record_key(did), "status") == b"retrying"
    assert redis_client.hexists(record_key(did), "handled:chatops")
    assert redis_client.zscore(PENDING, did) is not None  # the reaper will bring it back
    with pytest.raises(RuntimeError):
        process_delivery(rt, did)
    chatops_runs = [d for d in delivery_decisions(redis_client, did) if d["handler"] == "chatops"]
    assert len(chatops_runs) == 1


def test_poison_delivery_is_dead_after_max_attempts(rt, redis_client):
    did = accept(rt, body=NOTE.replace(b"hello", b"boom"))
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(RuntimeError):
            process_delivery(rt, did)
    assert process_delivery(rt, did) == "dead"
    assert redis_client.zscore(PENDING, did) is None
    assert len(calls) == MAX_ATTEMPTS


def test_missing_record(rt):
    assert process_delivery(rt, "nope") == "missing"


def test_reaper_requeues_only_unleased_unfinished(rt, redis_client):
    import time

    done, leased, lost = accept(rt, key="a"), accept(rt, key="b"), accept(rt, key="c")
    process_delivery(rt, done)
    lease = Lease(rt, leased)
    lease.acquire()
    redis_client.delete(rt.settings.task_queue)
    time.sleep(0.3)
    try:
        assert rt.inbox.reap() == [lost]
    finally:
        lease.release()
    assert redis_client.llen(rt.settings.task_queue) == 1
    assert rt.inbox.reap() == []  # not due again until another window passes


def test_unknown_handler_name_refuses_to_start(redis_server):
    settings = load_settings({"REDIS_URL": redis_server.client_url(), "HANDLERS": "chatops,nope"},
                             require_secret=False)
    with pytest.raises(ValueError, match="unknown handler.*nope"):
        build_runtime(settings)


def test_reaper_leaves_queued_deliveries_alone_while_a_backlog_drains(rt, redis_client):
    import time

    waiting = accept(rt, key="w")  # its message is still in the queue
    time.sleep(0.3)
    assert rt.inbox.reap() == []
    redis_client.delete(rt.settings.task_queue)  # the message was lost after all
    time.sleep(0.3)
    assert rt.inbox.reap() == [waiting]


def test_deliveries_cli_lists_and_reruns(rt, redis_client, redis_server):
    import os
    import subprocess
    import sys

    did = accept(rt, key="cli-1")
    process_delivery(rt, did)
    env = {**os.environ, "REDIS_URL": redis_server.client_url(), "HANDLERS": "chatops"}
    listed = subprocess.run([sys.executable, "-m", "tasks.cli", "deliveries"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and did in listed.stdout and "done" in listed.stdout
    rerun = subprocess.run([sys.executable, "-m", "tasks.cli", "deliveries", "--rerun", did],
                           env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert redis_client.hget(f"da:inbox:{did}", "status") == b"queued"
    assert redis_client.llen(rt.settings.task_queue) == 2  # the original message + the re-run
    missing = subprocess.run([sys.executable, "-m", "tasks.cli", "deliveries", "--rerun", "nope"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no delivery" in missing.stderr
