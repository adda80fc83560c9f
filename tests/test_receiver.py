"""The receiver against a real Redis: every refusal, dedup, and what ends up on the queue."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from tasks.inbox import LOG, PENDING, record_key
from tasks.settings import load_settings
from tasks.signing import signature_header
from webhooks.app import create_app

SECRET = "receiver-test-secret"
SIGNING_KEY = "whsec_" + base64.b64encode(b"k" * 32).decode()
QUEUE = "devops-agent"
PIPELINE = orjson.dumps({
    "object_kind": "pipeline",
    "object_attributes": {"id": 31, "ref": "main", "sha": "a" * 40, "status": "failed"},
    "project": {"id": 15, "path_with_namespace": "acme/shop"},
    "builds": [],
})


def make_client(redis_server, **env):
    settings = load_settings({"WEBHOOK_SECRET": f"old-secret-123,{SECRET}",
                              "REDIS_URL": redis_server.client_url(), **env})
    app = create_app(settings)
    return app.test_client()


@pytest.fixture
def client(redis_server, redis_client):
    return make_client(redis_server)


def post(client, body=PIPELINE, event="Pipeline Hook", token=SECRET, ctype="application/json",
         **headers):
    h = {"X-Gitlab-Event": event, "Content-Type": ctype, **headers}
    if token is not None:
        h["X-Gitlab-Token"] = token
    return client.post("/webhooks/gitlab", data=body, headers=h)


def queued(redis_client):
    return redis_client.llen(QUEUE)


def test_accepts_and_enqueues_one_task(client, redis_client):
    r = post(client, **{"Idempotency-Key": "k-1"})
    assert r.status_code == 202
    assert r.json["status"] == "queued"
    delivery = r.json["delivery_id"]
    assert queued(redis_client) == 1
    message = orjson.loads(redis_client.lindex(QUEUE, 0))
    assert message["headers"]["task"] == "devops_agent.process_event"
    body = orjson.loads(base64.b64decode(message["body"]))
    assert body[0] == [delivery]
    record = redis_client.hgetall(record_key(delivery))
    assert record[b"body"] == PIPELINE and record[b"status"] == b"queued"
    assert redis_client.zscore(PENDING, delivery) is not None
    assert redis_client.zscore(LOG, delivery) is not None


def test_rotated_secrets_both_accepted(client):
    assert post(client, token="old-secret-123").status_code == 202
    assert post(client, body=PIPELINE + b" ").status_code == 202


@pytest.mark.parametrize("token,reason", [(None, "missing"), ("wrong-secret", "does not match"),
                                          ("", "missing"), (SECRET + "x", "does not match"),
                                          (SECRET[:-1], "does not match")])
def test_bad_token_is_401_and_nothing_queued(client, redis_client, token, reason):
    r = post(client, token=token)
    assert r.status_code == 401
    assert reason in r.json["error"]
    assert queued(redis_client) == 0


def test_missing_event_header_is_400(client, redis_client):
    r = client.post("/webhooks/gitlab", data=PIPELINE,
                    headers={"X-Gitlab-Token": SECRET, "Content-Type": "application/json"})
    assert r.status_code == 400 and "X-Gitlab-Event" in r.json["error"]
    assert queued(redis_client) == 0


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_is_415(client, ctype):
    r = post(client, ctype=ctype)
    assert r.status_code == 415 and "application/json" in r.json["error"]


def test_json_with_charset_is_accepted(client):
    assert post(client, ctype="application/json; charset=utf-8").status_code == 202


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1,2,3]", b'"string"', b"\xff\xfe\x00",
                                  b"[" * 100_000 + b"]" * 100_000, b'{"a": NaN}'])
def test_malformed_json_is_400(client, redis_client, body):
    r = post(client, body=body)
    assert r.status_code == 400, r.data
    assert r.json["status"] == "refused"
    assert queued(redis_client) == 0


def test_object_kind_contradicting_the_header_is_400(client):
    r = post(client, event="Note Hook")
    assert r.status_code == 400 and "object_kind" in r.json["error"]


def test_unhandled_event_kind_is_202_ignored(client, redis_client):
    r = post(client, body=b'{"object_kind": "push"}', event="Push Hook")
    assert r.status_code == 202 and r.json["status"] == "ignored"
    assert queued(redis_client) == 0


def test_oversized_body_is_413_by_content_length(redis_server, redis_client):
    client = make_client(redis_server, MAX_BODY_BYTES="1000")
    r = post(client, body=b'{"x": "' + b"a" * 2000 + b'"}')
    assert r.status_code == 413 and "exceeds" in r.json["error"]
    assert queued(redis_client) == 0


def test_duplicate_idempotency_key_is_200_and_not_requeued(client, redis_client):
    first = post(client, **{"Idempotency-Key": "same"})
    for _ in range(4):
        again = post(client, **{"Idempotency-Key": "same"})
        assert again.status_code == 200 and again.json["status"] == "duplicate"
        assert again.json["delivery_id"] == first.json["delivery_id"]
    assert queued(redis_client) == 1


def test_without_idempotency_key_the_body_hash_dedupes(client, redis_client):
    assert post(client).status_code == 202
    assert post(client).status_code == 200
    assert post(client, body=PIPELINE + b"\n").status_code == 202
    assert queued(redis_client) == 2


def test_broker_down_is_503(redis_client):
    from tasks.redis_server import free_port

    settings = load_settings({"WEBHOOK_SECRET": SECRET,
                              "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    client = create_app(settings).test_client()
    r = post(client)
    assert r.status_code == 503 and "resend" in r.json["error"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_signature_required_when_configured(redis_server, redis_client):
    client = make_client(redis_server, WEBHOOK_SIGNING_KEY=SIGNING_KEY)
    key = base64.b64decode(SIGNING_KEY[len("whsec_"):])
    now = int(time.time())
    good = {"webhook-id": "msg-1", "webhook-timestamp": str(now),
            "webhook-signature": signature_header(key, "msg-1", now, PIPELINE)}
    assert post(client, **good).status_code == 202
    # missing
    r = post(client)
    assert r.status_code == 401 and "webhook-signature" in r.json["error"]
    # wrong (signed another body)
    bad = {**good, "webhook-id": "msg-2",
           "webhook-signature": signature_header(key, "msg-2", now, b"{}")}
    assert post(client, **bad).status_code == 401
    # stale: correctly signed, but 10 minutes old
    old = now - 600
    stale = {"webhook-id": "msg-3", "webhook-timestamp": str(old),
             "webhook-signature": signature_header(key, "msg-3", old, PIPELINE)}
    r = post(client, **stale)
    assert r.status_code == 401 and "5 minutes" in r.json["error"]
    # a rotation header with several signatures, one valid
    multi = {"webhook-id": "msg-4", "webhook-timestamp": str(now),
             "webhook-signature": "v1,AAAA " + signature_header(key, "msg-4", now, PIPELINE)}
    assert post(client, **multi).status_code == 202
    assert queued(redis_client) == 2


def test_webhook_id_dedupes_when_no_idempotency_key(redis_server, redis_client):
    client = make_client(redis_server, WEBHOOK_SIGNING_KEY=SIGNING_KEY)
    key = base64.b64decode(SIGNING_KEY[len("whsec_"):])
    now = int(time.time())
    h = {"webhook-id": "same-msg", "webhook-timestamp": str(now),
         "webhook-signature": signature_header(key, "same-msg", now, PIPELINE)}
    assert post(client, **h).status_code == 202
    assert post(client, **h).status_code == 200


def test_unknown_routes_and_methods_answer_json(client):
    r = client.get("/webhooks/gitlab")
    assert r.status_code == 405 and r.is_json
    r = client.get("/nope")
    assert r.status_code == 404 and r.is_json


def test_hostile_headers_do_not_crash(client, redis_client):
    r = post(client, event="Pipeline Hook\x00" + "x" * 10_000)
    assert r.status_code == 202 and r.json["status"] == "ignored"
    r = post(client, token="\u00e9" * 1000)
    assert r.status_code == 401
    r = post(client, **{"Idempotency-Key": "k" * 5000})
    assert r.status_code == 202


def test_metrics_count_outcomes(client):
    post(client)
    post(client, token="nope")
    text = client.get("/metrics").data.decode()
    assert 'devops_agent_webhook_deliveries_total{event="Pipeline Hook",outcome="queued"}' in text
    assert 'devops_agent_webhook_verification_failures_total{reason="token_invalid"}' in text
    assert "devops_agent_webhook_enqueue_seconds_bucket" in text


def test_no_secret_configured_refuses_to_start():
    from tasks.settings import ConfigError

    with pytest.raises(ConfigError, match="WEBHOOK_SECRET is not set"):
        load_settings({})


def test_secrets_are_not_logged(client, capsys):
    post(client, token=SECRET)
    post(client, token="wrong-secret")
    err = capsys.readouterr().err
    assert SECRET not in err
