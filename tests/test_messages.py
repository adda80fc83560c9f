"""The hand-built task message (tasks/engine/messages.py) against the one Celery itself publishes.

Celery publishes the task into a real Redis; the raw message it left in the queue is compared
field by field with ours. An upgrade of celery or kombu that changes the envelope, the headers or
the body fails here, before any message could be lost to it."""

from __future__ import annotations

import base64

import orjson
import pytest
from celery import Celery

from tasks.engine.messages import task_message

# Values that are per message or per host by design, not format.
PER_MESSAGE_HEADERS = {"id", "root_id", "origin"}
# reply_to: the publishing app's own id for results; our tasks ignore results, so it stays empty.
PER_MESSAGE_PROPERTIES = {"correlation_id", "delivery_tag", "reply_to"}


@pytest.fixture
def published(redis_server, redis_client):
    app = Celery("contract", broker=redis_server.client_url())
    app.conf.update(task_ignore_result=True, result_backend=None, task_serializer="json")
    try:
        # The same task declaration as the worker's (tasks/worker/shells.py), published by Celery.
        def process_event(delivery_id: str) -> str:
            return delivery_id

        task = app.task(name="devops_agent.process_event", ignore_result=True, acks_late=True,
                        reject_on_worker_lost=True)(process_event)
        task.apply_async(args=["abc123"], queue="contract-q")
        raw = redis_client.lpop("contract-q")
    finally:
        app.close()
    assert raw is not None, "Celery published nothing to the queue"
    return orjson.loads(raw)


def test_envelope_headers_and_body_match_celerys_own(published):
    ours = orjson.loads(task_message("devops_agent.process_event", ["abc123"], "contract-q"))
    assert set(ours) == set(published)
    for key in ("content-encoding", "content-type"):
        assert ours[key] == published[key]
    theirs_h, ours_h = published["headers"], ours["headers"]
    assert set(ours_h) == set(theirs_h)
    for key in set(theirs_h) - PER_MESSAGE_HEADERS:
        assert ours_h[key] == theirs_h[key], key
    theirs_p, ours_p = published["properties"], ours["properties"]
    assert set(ours_p) == set(theirs_p)
    for key in set(theirs_p) - PER_MESSAGE_PROPERTIES:
        assert ours_p[key] == theirs_p[key], key
    assert base64.b64decode(ours["body"]) and orjson.loads(base64.b64decode(ours["body"])) == \
        orjson.loads(base64.b64decode(published["body"]))


def test_ids_are_consistent_within_a_message():
    msg = orjson.loads(task_message("t", ["x"], "q", task_id="tid", tag="tag-1"))
    assert msg["headers"]["id"] == msg["headers"]["root_id"] == "tid"
    assert msg["properties"]["correlation_id"] == "tid"
    assert msg["properties"]["delivery_tag"] == "tag-1"
