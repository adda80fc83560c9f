"""The receiver against a real Redis: every refusal, dedup, and what ends up on the queue."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from tasks.config.settings import load_settings
from tasks.engine.schedule import SCHEDULE
from tasks.intake.inbox import LOG, Inbox, record_key
from tasks.intake.signing import signature_header
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
    record = Inbox(redis_client, queue=QUEUE).load(delivery)
    assert record["body"] == PIPELINE and record["status"] == b"queued"
    assert redis_client.zscore(SCHEDULE, "d:" + delivery) is not None  # redelivered if lost
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
    from tasks.platform.redis_server import free_port

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
    from tasks.config.settings import ConfigError

    with pytest.raises(ConfigError, match="WEBHOOK_SECRET is not set"):
        load_settings({})


def test_secrets_are_not_logged(redis_server, redis_client, tmp_path):
    """Read what a real receiver process wrote: the requests are logged, the secrets are not."""
    from tests.support.procs import base_env, post_delivery, start_web

    secret = "a-very-secret-token-1234"
    web, url = start_web(base_env(redis_server.client_url(), WEBHOOK_SECRET=secret), tmp_path)
    try:
        body = orjson.dumps({"object_kind": "note", "object_attributes": {
            "id": 1, "note": f"pasted by mistake: {secret}", "noteable_type": "Issue"},
            "project": {"id": 15, "path_with_namespace": "acme/shop"}})
        accepted = post_delivery(url, body, "Note Hook", token=secret)
        refused = post_delivery(url, body, "Note Hook", token=secret + "-wrong")
        assert (accepted.status_code, refused.status_code) == (202, 401)
    finally:
        web.stop()
    written = web.log()
    assert accepted.json()["delivery_id"] in written  # the process did log the delivery...
    assert "token_invalid" in written  # ...and the refusal
    assert secret not in written


# -- secrets bound to projects (WEBHOOK_SECRETS_FILE) ---------------------------------------------

ACME_SECRET = "acme-group-secret-new"
ACME_OLD = "acme-group-secret-old"
SHOP_SECRET = "shop-project-secret"
ID_SECRET = "project-77-secret"


def pipeline(path=None, pid=None, top_id=None, **extra):
    project = {}
    if path is not None:
        project["path_with_namespace"] = path
    if pid is not None:
        project["id"] = pid
    body = {"object_kind": "pipeline", "object_attributes": {"id": 1, "status": "failed"}, **extra}
    if project:
        body["project"] = project
    if top_id is not None:
        body["project_id"] = top_id
    return orjson.dumps(body)


@pytest.fixture
def bound(redis_server, redis_client, tmp_path):
    path = tmp_path / "secrets.yaml"
    path.write_text(f"acme/*: [{ACME_SECRET}, {ACME_OLD}]\n"
                    f"acme/shop: {SHOP_SECRET}\n"
                    f'"77": {ID_SECRET}\n')
    return make_client(redis_server, WEBHOOK_SECRETS_FILE=str(path))


def bound_to(redis_client, response):
    record = redis_client.hgetall(record_key(response.json["delivery_id"]))
    return orjson.loads(record[b"meta"])["bound_to"]


@pytest.mark.parametrize("token,body,expected", [
    (ACME_SECRET, pipeline("acme/web", 5), "acme/*"),
    (ACME_OLD, pipeline("acme/sub/group/web", 5), "acme/*"),  # rotation; subgroups too
    (ACME_SECRET, pipeline("ACME/Web", 5), "acme/*"),  # GitLab paths are case-insensitive
    (SHOP_SECRET, pipeline("acme/shop", 15), "acme/shop"),
    (ID_SECRET, pipeline(None, 77), "77"),
    (ID_SECRET, orjson.dumps({"object_kind": "build", "project_id": 77}), "77"),  # Job Hook
    (ID_SECRET, pipeline("other/thing", 77), "77"),  # the worker checks id and path agree
    (SECRET, pipeline("anything/at-all", 1), "*"),  # the global secret: one trust domain
    (SECRET, b'{"object_kind": "pipeline"}', "*"),
])
def test_a_bound_secret_speaks_for_its_projects(bound, redis_client, token, body, expected):
    event = "Job Hook" if b'"build"' in body else "Pipeline Hook"
    r = post(bound, body=body, token=token, event=event)
    assert r.status_code == 202, r.json
    assert bound_to(redis_client, r) == expected


@pytest.mark.parametrize("token,body", [
    (ACME_SECRET, pipeline("other/shop", 15)),  # another group's project
    (ACME_SECRET, pipeline("acmeshop/x", 15)),  # not a prefix match
    (ACME_SECRET, pipeline(None, 15)),  # id only: a path glob cannot vouch for it
    (ACME_SECRET, b'{"object_kind": "pipeline"}'),  # names no project at all
    (SHOP_SECRET, pipeline("acme/web", 5)),  # one project's secret, its sibling's delivery
    (ID_SECRET, pipeline("acme/web", 5)),
    (ID_SECRET, pipeline(None, 78)),
])
def test_a_bound_secret_cannot_speak_for_other_projects(bound, redis_client, token, body):
    r = post(bound, body=body, token=token)
    assert r.status_code == 401, r.json
    assert r.json["status"] == "refused" and "X-Gitlab-Token" in r.json["error"]
    assert queued(redis_client) == 0


def test_the_most_specific_binding_is_recorded(redis_server, redis_client, tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text(orjson.dumps({"acme/*": "shared-secret-1", "acme/shop": "shared-secret-1",
                                  "15": ["shared-secret-1"]}).decode())
    client = make_client(redis_server, WEBHOOK_SECRETS_FILE=str(path))
    r = post(client, body=pipeline("acme/shop", 15), token="shared-secret-1")
    assert r.status_code == 202 and bound_to(redis_client, r) == "15"
    r = post(client, body=pipeline("acme/shop", 16), token="shared-secret-1")
    assert r.status_code == 202 and bound_to(redis_client, r) == "acme/shop"


def test_secrets_file_alone_is_enough(redis_server, redis_client, tmp_path):
    path = tmp_path / "secrets.yaml"
    path.write_text(f"acme/shop: {SHOP_SECRET}\n")
    settings = load_settings({"WEBHOOK_SECRETS_FILE": str(path),
                              "REDIS_URL": redis_server.client_url()})
    client = create_app(settings).test_client()
    assert post(client, body=pipeline("acme/shop", 15), token=SHOP_SECRET).status_code == 202
    assert post(client, body=pipeline("acme/shop", 15), token=SECRET).status_code == 401


@pytest.mark.parametrize("body,message", [
    (b'{"object_kind": "pipeline", "project": "acme/shop"}', "project must be an object"),
    (b'{"object_kind": "pipeline", "project": {"path_with_namespace": ["a"]}}', "must be a string"),
    (b'{"object_kind": "pipeline", "project": {"id": "15"}}', "whole number"),
    (b'{"object_kind": "pipeline", "project": {"id": true}}', "whole number"),
    (b'{"object_kind": "pipeline", "project_id": 1.5}', "whole number"),
    (b'{"object_kind": "pipeline", "project": {"id": 15}, "project_id": 16}', "different projects"),
])
def test_wrong_types_for_the_project_fields_are_400(client, redis_client, body, message):
    r = post(client, body=body)
    assert r.status_code == 400 and message in r.json["error"]
    assert queued(redis_client) == 0


# -- X-Gitlab-Instance ----------------------------------------------------------------------------

@pytest.mark.parametrize("instance,status", [
    ("https://gitlab.example.com", 202),
    ("https://GitLab.Example.com:443/", 202),  # normalised: case, default port, path
    ("https://gitlab.example.com/some/relative/root", 202),
    ("http://gitlab.example.com", 401),  # another scheme
    ("https://gitlab.example.com:8443", 401),
    ("https://gitlab.evil.example", 401),
    ("https://user@gitlab.example.com", 401),
    ("not a url", 401),
    ("", 401),
])
def test_instance_header_must_name_the_configured_gitlab(redis_server, redis_client, instance,
                                                         status):
    client = make_client(redis_server, GITLAB_URL="https://gitlab.example.com/")
    r = post(client, **{"X-Gitlab-Instance": instance})
    assert r.status_code == status, r.json
    if status == 401:
        assert "X-Gitlab-Instance" in r.json["error"]
        text = client.get("/metrics").data.decode()
        assert 'verification_failures_total{reason="instance_mismatch"}' in text


def test_instance_is_not_checked_without_gitlab_url_or_header(redis_server, redis_client):
    client = make_client(redis_server)
    assert post(client, **{"X-Gitlab-Instance": "https://anything.example"}).status_code == 202
    client = make_client(redis_server, GITLAB_URL="https://gitlab.example.com")
    assert post(client, body=PIPELINE + b" ").status_code == 202  # not sent: older GitLab


# -- hostile input: a JSON 4xx, never a 500 --------------------------------------------------------

@pytest.mark.parametrize("object_kind", [["pipeline"], {"a": 1}, 7, True, 1.5])
def test_object_kind_of_the_wrong_type_is_400(client, redis_client, object_kind):
    r = post(client, body=orjson.dumps({"object_kind": object_kind}))
    assert r.status_code == 400 and r.json["status"] == "refused"
    assert "object_kind" in r.json["error"]


@pytest.mark.parametrize("stamp", ["9" * 400, "-1", "+1700000000", "1_700_000_000",
                                   "\u0661\u0662\u0663", "1e9", " 1700000000", "0x10"])
def test_malformed_webhook_timestamp_is_401_not_500(redis_server, redis_client, stamp):
    client = make_client(redis_server, WEBHOOK_SIGNING_KEY=SIGNING_KEY)
    r = post(client, **{"webhook-id": "m", "webhook-timestamp": stamp,
                        "webhook-signature": "v1,AAAA"})
    assert r.status_code == 401 and r.json["status"] == "refused", r.json


def test_a_body_that_cannot_be_read_is_400(client, redis_client):
    from gunicorn.http.errors import InvalidChunkSize, NoMoreData

    class Broken:
        def __init__(self, exc):
            self.exc = exc

        def read(self, *a):
            raise self.exc

    for exc in (InvalidChunkSize("zz"), NoMoreData(b""), OSError("reset")):
        r = client.post("/webhooks/gitlab", headers={
            "X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": SECRET,
            "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input": Broken(exc), "wsgi.input_terminated": True})
        assert r.status_code == 400 and r.json["status"] == "refused", (exc, r.data)
        assert type(exc).__name__ in r.json["error"]


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE", "PATCH"])
def test_other_methods_answer_json(client, method):
    r = client.open("/webhooks/gitlab", method=method)
    assert r.status_code == 405 and r.is_json and r.json["status"] == "refused"
