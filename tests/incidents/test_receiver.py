"""POST /webhooks/alertmanager against a real Redis through Flask's test client: who may send,
what a body may be, and what ends up recorded (exactly one delivery, or nothing)."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from tasks.config.settings import ConfigError, load_settings
from tasks.incidents import intake
from tasks.intake.inbox import LOG, Inbox
from tests.incidents.support import alert, notification
from webhooks.app import create_app

TOKEN = "am-token-0123456789"
BASIC = "alertmanager:s3cret-password"
NOW = time.time()


def client_for(redis_server, **env):
    settings = load_settings({"WEBHOOK_SECRET": "gitlab-secret-123",
                              "REDIS_URL": redis_server.client_url(), **env})
    return create_app(settings).test_client()


@pytest.fixture
def client(redis_server, redis_client):
    return client_for(redis_server, ALERTMANAGER_TOKEN=f"old-token-12345,{TOKEN}",
                      ALERTMANAGER_BASIC_AUTH=BASIC, ALERTMANAGER_MAX_BODY_BYTES="300000")


def post(client, body, auth=f"Bearer {TOKEN}", ctype="application/json"):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Content-Type": ctype, **({"Authorization": auth} if auth is not None else {})}
    return client.post("/webhooks/alertmanager", data=data, headers=headers)


def recorded(redis_client):
    return redis_client.zcard(LOG)


def basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


def test_bearer_and_basic_are_accepted_and_recorded_once(client, redis_client):
    r = post(client, notification(alert(starts=NOW)))
    assert r.status_code == 202, r.json
    record = Inbox(redis_client, queue="devops-agent").load(r.json["delivery_id"])
    assert record["kind"] == b"alert" and record["event"] == b"Alertmanager Webhook"
    # the same notification again (repeat_interval), now with basic auth: a duplicate
    again = post(client, notification(alert(starts=NOW)), auth=basic(BASIC))
    assert again.status_code == 200 and again.json["delivery_id"] == r.json["delivery_id"]
    # the rotated-out token still works while it is configured
    assert post(client, notification(alert(starts=NOW + 1)), auth="Bearer old-token-12345"
                ).status_code == 202
    assert recorded(redis_client) == 2


@pytest.mark.parametrize(("auth", "says"), [
    (None, "missing Authorization"),
    ("Bearer ", "must be `Bearer"),
    ("Bearer not-the-token", "Bearer token is not valid"),
    (basic("alertmanager:wrong-password"), "Basic credentials are not valid"),
    ("Basic !!!", "not base64"),
    (f"Token {TOKEN}", "must be `Bearer"),
    (TOKEN, "must be `Bearer"),
])
def test_wrong_or_missing_credentials_get_401(client, redis_client, auth, says):
    r = post(client, notification(alert(starts=NOW)), auth=auth)
    assert r.status_code == 401 and says in r.json["error"], r.json
    assert "WWW-Authenticate" in r.headers
    assert TOKEN not in r.get_data(as_text=True) and recorded(redis_client) == 0


def test_the_receiver_is_off_until_a_credential_is_configured(redis_server, redis_client):
    off = client_for(redis_server)
    r = post(off, notification(alert(starts=NOW)))
    assert r.status_code == 401 and "ALERTMANAGER_TOKEN" in r.json["error"]
    assert recorded(redis_client) == 0


def test_bad_settings_are_refused_at_start_up_without_the_secret():
    with pytest.raises(ConfigError) as exc:
        load_settings({"WEBHOOK_SECRET": "gitlab-secret-123", "ALERTMANAGER_TOKEN": "short",
                       "ALERTMANAGER_BASIC_AUTH": "no-colon-here"})
    assert "ALERTMANAGER_TOKEN" in str(exc.value) and "ALERTMANAGER_BASIC_AUTH" in str(exc.value)
    assert "short" not in str(exc.value) and "no-colon-here" not in str(exc.value)


def test_secrets_are_scrubbed_from_logs():
    s = load_settings({"WEBHOOK_SECRET": "gitlab-secret-123", "ALERTMANAGER_TOKEN": TOKEN,
                       "ALERTMANAGER_BASIC_AUTH": BASIC})
    scrubbed = s.secret_values()
    assert TOKEN in scrubbed and BASIC in scrubbed
    assert base64.b64encode(BASIC.encode()).decode() in scrubbed


def _without(key):
    body = notification(alert(starts=NOW))
    del body[key]
    return body


def _alert_without(key):
    body = notification(alert(starts=NOW))
    del body["alerts"][0][key]
    return body


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"{oops", 400, "not valid JSON"),
    (b"[]", 400, "JSON object"),
    ({**notification(alert(starts=NOW)), "version": "3"}, 400, "version"),
    ({**notification(alert(starts=NOW)), "version": 4}, 400, "version"),
    (_without("version"), 400, "version: missing"),
    (_without("groupKey"), 400, "groupKey"),
    (_without("alerts"), 400, "alerts"),
    ({**notification(alert(starts=NOW)), "status": "pending"}, 400, "status"),
    ({**notification(alert(starts=NOW)), "truncatedAlerts": -1}, 400, "truncatedAlerts"),
    (_alert_without("fingerprint"), 400, "alerts[0].fingerprint"),
    (_alert_without("startsAt"), 400, "alerts[0].startsAt"),
    (_alert_without("labels"), 400, "alerts[0].labels"),
    (notification({**alert(starts=NOW), "startsAt": "yesterday"}), 400, "RFC 3339"),
    (notification({**alert(starts=NOW), "labels": {"a": 1}}), 400, "abels.a: expected a string"),
    (notification(alert(starts=NOW, team="x" * 2000)), 400, "longer than 1024"),
    (notification({**alert(starts=NOW), "labels": {f"l{i}": "v" for i in range(65)}}), 400,
     "more than 64"),
    (notification(*[alert(starts=NOW, fingerprint=f"{i:016x}") for i in range(501)]), 413,
     "at most 500"),
    (b"{" + b" " * 400_000 + b"}", 413, "exceeds the limit"),
])
def test_malformed_bodies_get_a_clear_4xx_and_nothing_is_recorded(client, redis_client, body,
                                                                   status, says):
    r = post(client, body)
    assert r.status_code == status and says in r.json["error"], r.json
    assert r.json["status"] == "refused" and recorded(redis_client) == 0


def test_content_type_must_be_json(client, redis_client):
    r = post(client, notification(alert(starts=NOW)), ctype="text/plain")
    assert r.status_code == 415 and recorded(redis_client) == 0


def test_hostile_text_and_a_100_kb_annotation_are_accepted_as_data(client, redis_client):
    """Annotations are free text: kept whole in the inbox, escaped and cut when rendered
    (tests/incidents/test_incidents.py); labels stay bounded."""
    hostile = alert(starts=NOW, summary="<img src=x onerror=alert(1)> @all /close",
                    description="y" * 100_000, team="[x](javascript:alert(1)) | ~bug")
    r = post(client, notification(hostile))
    assert r.status_code == 202, r.json
    record = Inbox(redis_client, queue="devops-agent").load(r.json["delivery_id"])
    assert orjson.loads(record["body"])["alerts"][0]["annotations"]["description"] == "y" * 100_000


def test_a_gitlab_token_cannot_send_alerts_nor_an_alertmanager_token_gitlab_hooks(client,
                                                                                  redis_client):
    assert post(client, notification(alert(starts=NOW)), auth="Bearer gitlab-secret-123"
                ).status_code == 401
    r = client.post("/webhooks/gitlab", data=orjson.dumps(notification(alert(starts=NOW))),
                    headers={"Content-Type": "application/json", "X-Gitlab-Token": TOKEN,
                             "X-Gitlab-Event": intake.EVENT})
    assert r.status_code == 401
    assert recorded(redis_client) == 0
