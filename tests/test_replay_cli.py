"""`devops-agent replay`: sending as GitLab does, dry runs, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tasks.cli.replay import build_request
from tests.support.logs import fixture_log

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = ROOT / "fixtures" / "payloads"


def run_cli(*args: str, env: dict | None = None, stdin: bytes | None = None):
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "GITLAB_URL", "GITLAB_TOKEN")}
    base.update({"WEBHOOK_SECRET": "replay-secret-1", "PYTHONPATH": str(ROOT)})
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "tasks.cli.main", *args], env=base, cwd=ROOT,
                          input=stdin, capture_output=True, timeout=120)


def test_headers_are_those_gitlab_sends(monkeypatch):
    monkeypatch.setenv("WEBHOOK_SECRET", "replay-secret-1")
    body = (PAYLOADS / "job_failed.json").read_bytes()
    event, headers = build_request(body, None, None)
    assert event == "Job Hook"
    assert headers["X-Gitlab-Token"] == "replay-secret-1"
    assert headers["X-Gitlab-Instance"] == "https://gitlab.example.com"
    assert headers["User-Agent"].startswith("GitLab/")
    for name in ("Idempotency-Key", "X-Gitlab-Webhook-UUID", "X-Gitlab-Event-UUID"):
        assert headers[name]
    assert "webhook-signature" not in headers


def test_signing_headers_when_a_key_is_configured(monkeypatch):
    import base64

    from webhooks.verify import check_signature

    key = base64.b64encode(b"s" * 32).decode()
    monkeypatch.setenv("WEBHOOK_SECRET", "replay-secret-1")
    monkeypatch.setenv("WEBHOOK_SIGNING_KEY", "whsec_" + key)
    body = (PAYLOADS / "note_issue_command.json").read_bytes()
    _, headers = build_request(body, None, "fixed-key")
    assert headers["webhook-id"] == "fixed-key" == headers["Idempotency-Key"]
    check_signature(headers, body, base64.b64decode(key))  # raises if wrong


@pytest.mark.parametrize("args,stdin,message", [
    (["replay", "/nonexistent.json", "--url", "http://127.0.0.1:9/x"], None, "cannot read"),
    (["replay", "-", "--url", "http://127.0.0.1:9/x"], b"{broken", "not valid JSON"),
    (["replay", "-", "--url", "http://127.0.0.1:9/x"], b"[]", "JSON object"),
    (["replay", "-", "--url", "http://127.0.0.1:9/x"], b'{"object_kind": "weird"}', "--event"),
    (["replay", "-", "--url", "file:///etc/passwd"], b'{"object_kind": "note"}', "http(s) URL"),
    (["replay", "-"], b'{"object_kind": "note"}', "--dry-run"),
])
def test_bad_input_is_a_clear_error_not_a_traceback(args, stdin, message):
    result = run_cli(*args, stdin=stdin)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert message in err and "Traceback" not in err


def test_unreachable_url_exits_1():
    result = run_cli("replay", str(PAYLOADS / "note_issue_command.json"), "--url",
                     "http://127.0.0.1:9/webhooks/gitlab")
    assert result.returncode == 1 and "Traceback" not in result.stderr.decode()


def test_dry_run_prints_decisions_and_writes_nothing(fake_gitlab):
    fake_gitlab.add_project("acme/shop", id=15)
    fake_gitlab.add_issue(15, "Checkout fails", iid=42)
    fake_gitlab.add_mr(15, "Fix", "42-fix-checkout", iid=7, description="Closes #42")
    fake_gitlab.add_pipeline(15, id=1201, ref="42-fix-checkout", jobs=[
        {"id": 9202, "name": "unit-tests", "trace": fixture_log("pytest-failure.log").read_text()},
        {"id": 9203, "name": "integration-tests", "failure_reason": "runner_system_failure"}])
    fake_gitlab.clear_calls()
    result = run_cli("replay", str(PAYLOADS / "pipeline_failed.json"), "--dry-run", env={
        "GITLAB_URL": fake_gitlab.url, "GITLAB_TOKEN": fake_gitlab.token,
        "GITLAB_PROJECTS": "15"})
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    decisions = [orjson.loads(line) for line in result.stdout.splitlines()]
    actions = {d.get("name"): d.get("what") for d in decisions if d.get("name")}
    assert actions["integration-tests"].startswith("would retry")
    assert "would hand off" in actions["unit-tests"]
    assert all(d.get("dry_run") for d in decisions if "handler" in d)
    assert fake_gitlab.write_calls() == []
    assert fake_gitlab.calls(method="GET", path_re=r"/jobs/9202/trace")
