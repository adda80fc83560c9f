"""Secrets never leave the process: Sentry events and log lines are scrubbed."""

import base64
import logging
import time

import orjson
import pytest
import sentry_sdk

from tasks.config.settings import load_settings, signing_key_forms
from tasks.intake.signing import signature_header
from tasks.platform.logs import JsonFormatter, log_context
from tasks.platform.sentry import scrubber
from tests.support.sentry_transport import Recording

SECRET = "super-secret-token-123"


def test_sentry_events_drop_headers_bodies_and_secret_values():
    event = {
        "request": {"headers": {"X-Gitlab-Token": SECRET, "Webhook-Signature": "v1,abc",
                                "User-Agent": "GitLab/17"}, "data": '{"big": "body"}'},
        "exception": {"values": [{"value": f"401 for token {SECRET}"}]},
        "extra": {"nested": [f"Bearer {SECRET}"]},
    }
    out = scrubber([SECRET])(event, None)
    text = orjson.dumps(out).decode()
    assert SECRET not in text
    assert out["request"]["headers"]["X-Gitlab-Token"] == "[redacted]"
    assert out["request"]["headers"]["User-Agent"] == "GitLab/17"
    assert "data" not in out["request"]


def test_secrets_with_json_special_characters_are_scrubbed():
    tricky = 'p"a\\ss\nword'
    out = scrubber([tricky])({"message": f"oops {tricky}"}, None)
    assert "[redacted]" in out["message"] and "word" not in out["message"]


def test_log_lines_mask_secrets_and_carry_context():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, f"token={SECRET}", None, None)
    with log_context(idempotency_key="k-1", event="Note Hook"):
        line = JsonFormatter([SECRET, "short"]).format(record)
    data = orjson.loads(line)
    assert SECRET not in line and data["msg"] == "token=[redacted]"
    assert data["idempotency_key"] == "k-1" and data["event"] == "Note Hook"


def test_log_lines_mask_secrets_with_json_special_characters():
    tricky = 'to"ken\\with\nnewline'
    record = logging.LogRecord("x", logging.INFO, __file__, 1, f"oops {tricky}", None, None)
    line = JsonFormatter([tricky]).format(record)
    assert "newline" not in line and "[redacted]" in line


# -- real errors with signing on, through sentry_sdk, with a transport that records events -------




# Not all printable, not all random: the repr has both escapes and plain characters.
KEY = bytes(range(200, 216)) + b"Kk-printable-pt"
SIGNING = "whsec_" + base64.b64encode(KEY).decode()
TOKEN = "observability-test-token"
DSN = "https://public@sentry.invalid/1"



def key_forms() -> list[str]:
    forms = signing_key_forms(SIGNING)
    assert repr(KEY)[2:-1] in forms and KEY.hex() in forms and SIGNING in forms
    return [*forms, TOKEN]


@pytest.fixture
def sentry():
    yield
    client = sentry_sdk.get_client()
    client.close()
    # a client that records nothing for the tests that follow (sentry_sdk.init() would install
    # the auto-enabling integrations, e.g. Celery's trace headers on every message)
    sentry_sdk.get_global_scope().set_client(None)


def failing_app(redis_server, monkeypatch, transport):
    import webhooks.verify
    from tasks.platform.sentry import init_sentry
    from webhooks.app import create_app

    env = {"WEBHOOK_SECRET": TOKEN, "REDIS_URL": redis_server.client_url(),
           "WEBHOOK_SIGNING_KEY": SIGNING}
    settings = load_settings({**env, "SENTRY_DSN": DSN})
    app = create_app(load_settings(env))  # Sentry is initialised below, with the same settings
    # What the receiver's init does, without the auto-enabling integrations (they patch Celery and
    # Flask for the whole test process); the errors reach Sentry through the logging integration.
    init_sentry(settings, "web", transport=transport, auto_enabling_integrations=False)

    # A real failure deep in verification, in a frame whose locals hold the decoded key, and
    # whose message quotes it as a careless library might.
    def broken_signature(key, msg_id, stamp, body):
        as_text = base64.b64encode(key).decode()
        raise ValueError(f"cannot sign with {key!r} (hex {key.hex()}, base64 {as_text})")

    monkeypatch.setattr(webhooks.verify, "signature", broken_signature)
    return app.test_client()


def deliver(client):
    now = int(time.time())
    body = b'{"object_kind": "pipeline", "project": {"id": 1}}'
    return client.post("/webhooks/gitlab", data=body, headers={
        "X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": TOKEN,
        "Content-Type": "application/json", "webhook-id": "m-1", "webhook-timestamp": str(now),
        "webhook-signature": signature_header(KEY, "m-1", now, body)})


def test_sentry_events_of_real_errors_carry_no_key_material(redis_server, redis_client,
                                                            monkeypatch, capsys, sentry):
    transport = Recording()
    client = failing_app(redis_server, monkeypatch, transport)
    r = deliver(client)
    assert r.status_code == 500 and r.json == {"status": "error", "error": "internal error"}
    # and an error inside the Redis call path, with the signature check passing
    import webhooks.verify
    from tasks.intake.inbox import Inbox
    from tasks.intake.signing import signature

    monkeypatch.setattr(webhooks.verify, "signature", signature)
    monkeypatch.setattr(Inbox, "accept", lambda self, **kw: 1 / 0)
    assert deliver(client).status_code == 500
    sentry_sdk.flush()
    assert len(transport.events) >= 2
    text = orjson.dumps(transport.events, default=str).decode()
    assert "cannot sign with" in text and "ZeroDivisionError" in text
    for form in key_forms():
        assert orjson.dumps(form).decode()[1:-1] not in text, form
    frames = [f for e in transport.events for v in e.get("exception", {}).get("values", [])
              for f in (v.get("stacktrace") or {}).get("frames", [])]
    assert frames and not any("vars" in f for f in frames)
    logged = capsys.readouterr().err
    assert "cannot sign with" in logged
    for form in key_forms():
        assert orjson.dumps(form).decode()[1:-1] not in logged, form


def test_without_our_settings_the_same_error_would_leak_the_key(redis_server, redis_client,
                                                                monkeypatch, sentry):
    """The control: proves the test above would see a leak (frame locals and the message)."""
    transport = Recording()
    client = failing_app(redis_server, monkeypatch, transport)
    sentry_sdk.init(dsn=DSN, transport=transport, include_local_variables=True,
                    auto_enabling_integrations=False)
    assert deliver(client).status_code == 500
    sentry_sdk.flush()
    text = orjson.dumps(transport.events, default=str).decode()
    assert KEY.hex() in text and any('"vars"' in orjson.dumps(e).decode() for e in transport.events)


def test_scrubber_masks_every_form_of_the_signing_key():
    forms = signing_key_forms(SIGNING)
    event = {"message": " | ".join(forms), "extra": {"key": repr(KEY), "nested": [KEY.hex()]},
             "exception": {"values": [{"stacktrace": {"frames": [{"vars": {"key": repr(KEY)}}]}}]}}
    out = orjson.dumps(scrubber(forms)(event, None)).decode()
    assert KEY.hex() not in out and repr(KEY)[2:-1] not in out and SIGNING not in out
    assert base64.b64encode(KEY).decode() not in out and '"vars"' not in out


def test_formatters_built_from_a_logging_config_mask_registered_secrets():
    """gunicorn's own loggers get a JsonFormatter from its logconfig_dict, without secrets."""
    from tasks.platform.logs import register_secrets

    register_secrets(signing_key_forms(SIGNING))
    record = logging.LogRecord("gunicorn.error", logging.INFO, __file__, 1,
                               f"bad header {KEY!r} {KEY.hex()}", None, None)
    line = JsonFormatter().format(record)
    assert KEY.hex() not in line and repr(KEY)[2:-1] not in line and "[redacted]" in line
