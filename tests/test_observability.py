"""Secrets never leave the process: Sentry events and log lines are scrubbed."""

import logging

import orjson

from tasks.logs import JsonFormatter, log_context
from tasks.observability import scrubber

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
