"""process_delivery and the engine over a real Redis: statuses, leases, back-off, errors by kind,
poison deliveries, and when the engine sends a message again."""

from __future__ import annotations

import time

import orjson
import pytest

from tasks.config.settings import load_settings
from tasks.engine.schedule import BACKOFF_BASE, MAX_ATTEMPTS, SCHEDULE
from tasks.gitlab.client import Forbidden, RateLimited
from tasks.intake.inbox import record_key
from tasks.platform.handlers import REGISTRY, HelpRecord, handler
from tasks.wiring.runtime import build_runtime
from tasks.worker.context import delivery_decisions
from tasks.worker.dispatch import process_delivery

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


def member(did):
    return "d:" + did


def make_due(rt, did):
    """Time passing: the delivery's back-off is over."""
    rt.schedule.again(member(did), 0)


def test_runs_each_active_handler_once_and_finishes(rt, redis_client):
    did = accept(rt)
    assert process_delivery(rt, did) == "done"
    assert [d["handler"] for d in delivery_decisions(redis_client, did)] == ["chatops", "explodes_on_boom"]
    assert redis_client.zscore(SCHEDULE, member(did)) is None
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
    lease = rt.schedule.lease(member(did))
    assert lease is not None
    try:
        assert process_delivery(rt, did) == "leased"
    finally:
        lease.release()
    assert process_delivery(rt, did) == "done"


def test_invalid_payload_is_finished_as_invalid_not_retried(rt, redis_client):
    did = accept(rt, body=b'{"object_kind": "note", "object_attributes": {}}')
    assert process_delivery(rt, did) == "invalid"
    assert b"object_attributes" in redis_client.hget(record_key(did), "error")
    assert redis_client.zscore(SCHEDULE, member(did)) is None


def test_failed_handler_backs_off_and_finished_handlers_are_not_rerun(rt, redis_client):
    did = accept(rt, body=NOTE.replace(b"hello", b"boom"))
    before = time.time()
    assert process_delivery(rt, did) == "retrying"
    state = rt.schedule.state(member(did))
    assert state["status"] == "waiting" and "handler failure" in state["error"]
    assert float(state["next_at"]) >= before + BACKOFF_BASE * 0.8
    assert redis_client.hexists(record_key(did), "handled:chatops")
    # a copy that arrives before the back-off is over does nothing
    assert process_delivery(rt, did) == "not-due"
    assert calls == ["boom"]
    make_due(rt, did)
    assert process_delivery(rt, did) == "retrying"
    chatops_runs = [d for d in delivery_decisions(redis_client, did) if d["handler"] == "chatops"]
    assert len(chatops_runs) == 1
    assert calls == ["boom", "boom"]


def test_poison_delivery_is_dead_after_max_attempts_and_listed(rt, redis_client):
    did = accept(rt, body=NOTE.replace(b"hello", b"boom"))
    outcomes = []
    for _ in range(MAX_ATTEMPTS):
        outcomes.append(process_delivery(rt, did))
        make_due(rt, did)
    assert outcomes == ["retrying"] * (MAX_ATTEMPTS - 1) + ["dead"]
    assert process_delivery(rt, did) == "already-dead"
    assert redis_client.zscore(SCHEDULE, member(did)) is None
    assert len(calls) == MAX_ATTEMPTS
    listed = {d["delivery_id"]: d for d in rt.inbox.recent()}
    assert listed[did]["status"] == "dead" and "handler failure" in listed[did]["error"]


def _raises(exc):
    def fn(event, ctx):
        calls.append(type(exc).__name__)
        raise exc
    return fn


@pytest.fixture
def raising(redis_server, redis_client):
    made = []

    def make(exc):
        handler("raises", kinds=("note",), help=HelpRecord(description="test only"))(_raises(exc))
        made.append("raises")
        settings = load_settings({"REDIS_URL": redis_server.client_url(), "HANDLERS": "raises"},
                                 require_secret=False)
        return build_runtime(settings)
    calls.clear()
    yield make
    REGISTRY.handlers.pop("raises", None)


def test_permanent_refusal_finishes_once_with_the_reason(raising, redis_client):
    rt = raising(Forbidden("retry_job: 403 Forbidden", status=403))
    did = accept(rt)
    assert process_delivery(rt, did) == "failed"
    make_due(rt, did)
    assert process_delivery(rt, did) == "already-failed"
    assert calls == ["Forbidden"]
    assert "403" in rt.schedule.state(member(did))["error"]


def test_rate_limit_waits_at_least_retry_after(raising):
    rt = raising(RateLimited("get_pipeline: 429", retry_after=30))
    did = accept(rt)
    before = time.time()
    assert process_delivery(rt, did) == "retrying"
    assert float(rt.schedule.state(member(did))["next_at"]) >= before + 30


def test_missing_record(rt):
    assert process_delivery(rt, "nope") == "missing"


def test_engine_resends_only_lost_unleased_unfinished_items(rt, redis_client):
    done, leased, lost = accept(rt, key="a"), accept(rt, key="b"), accept(rt, key="c")
    process_delivery(rt, done)
    lease = rt.schedule.lease(member(leased))
    redis_client.delete(rt.settings.task_queue)  # every message was lost
    later = time.time() + rt.settings.redeliver_after_seconds + 1
    try:
        assert rt.schedule.send_due(now=later) == [member(lost)]
    finally:
        lease.release()
    assert redis_client.llen(rt.settings.task_queue) == 1
    assert rt.schedule.send_due(now=later) == []  # not due again until another window passes
    assert redis_client.zscore(SCHEDULE, member(done)) is None


def test_waiting_item_is_sent_when_due_and_not_before(rt, redis_client):
    did = accept(rt, body=NOTE.replace(b"hello", b"boom"))
    process_delivery(rt, did)
    redis_client.delete(rt.settings.task_queue)
    next_at = float(rt.schedule.state(member(did))["next_at"])
    assert rt.schedule.send_due(now=next_at - 0.5) == []
    assert rt.schedule.send_due(now=next_at + 0.01) == [member(did)]
    assert redis_client.llen(rt.settings.task_queue) == 1


def test_unknown_handler_name_refuses_to_start(redis_server):
    settings = load_settings({"REDIS_URL": redis_server.client_url(), "HANDLERS": "chatops,nope"},
                             require_secret=False)
    with pytest.raises(ValueError, match=r"unknown handler.*nope"):
        build_runtime(settings)


def test_engine_leaves_queued_deliveries_alone_while_a_backlog_drains(rt, redis_client):
    waiting = accept(rt, key="w")  # its message is still in the queue
    later = time.time() + rt.settings.redeliver_after_seconds + 1
    assert rt.schedule.send_due(now=later) == []
    redis_client.delete(rt.settings.task_queue)  # the message was lost after all
    assert rt.schedule.send_due(now=later + rt.settings.redeliver_after_seconds + 1) == \
        [member(waiting)]


def test_deliveries_cli_lists_and_reruns(rt, redis_client, redis_server):
    import os
    import subprocess
    import sys

    did = accept(rt, key="cli-1")
    process_delivery(rt, did)
    env = {**os.environ, "REDIS_URL": redis_server.client_url(), "HANDLERS": "chatops"}
    listed = subprocess.run([sys.executable, "-m", "tasks.cli.main", "deliveries"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and did in listed.stdout and "done" in listed.stdout
    rerun = subprocess.run([sys.executable, "-m", "tasks.cli.main", "deliveries", "--rerun", did],
                           env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert redis_client.hget(f"da:inbox:{did}", "status") == b"queued"
    assert redis_client.llen(rt.settings.task_queue) == 2  # the original message + the re-run
    missing = subprocess.run([sys.executable, "-m", "tasks.cli.main", "deliveries", "--rerun", "nope"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no delivery" in missing.stderr


def test_a_follow_on_job_asked_for_twice_runs_once(rt, redis_client):
    from tasks.worker import jobs
    from tasks.worker.jobs import job_member

    ran = []
    jobs.JOBS["test.record"] = lambda rt_, **kw: ran.append(kw) or "ok"
    try:
        assert rt.enqueue_job("test.record", {"n": 1}, key="thing:1")
        assert not rt.enqueue_job("test.record", {"n": 1}, key="thing:1")
        ident = job_member("test.record", {"n": 1}, "thing:1").split(":", 1)[1]
        assert redis_client.llen(rt.settings.task_queue) == 1
        assert jobs.run_job(rt, ident) == "done"
        assert jobs.run_job(rt, ident) == "already-done"
        assert not rt.enqueue_job("test.record", {"n": 1}, key="thing:1")  # done is done
        assert ran == [{"n": 1}]
    finally:
        jobs.JOBS.pop("test.record", None)


def test_a_failing_job_backs_off_like_a_delivery(rt, redis_client):
    from tasks.worker import jobs
    from tasks.worker.jobs import job_member

    def flaky(rt_, **kw):
        raise RateLimited("create_issue: 429", retry_after=7)
    jobs.JOBS["test.flaky"] = flaky
    try:
        rt.enqueue_job("test.flaky", {}, key="k")
        member = job_member("test.flaky", {}, "k")
        before = time.time()
        assert jobs.run_job(rt, member.split(":", 1)[1]) == "retrying"
        assert float(rt.schedule.state(member)["next_at"]) >= before + 7
    finally:
        jobs.JOBS.pop("test.flaky", None)
