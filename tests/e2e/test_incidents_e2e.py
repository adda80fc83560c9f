"""Alerts → incidents → rollback, end to end: Alertmanager's webhook → gunicorn → real Redis →
a real worker → the fake GitLab over HTTP (python-gitlab), rolling back on the fake
kube-apiserver with the real kubernetes client."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
import requests

from tasks.deploy import keys
from tasks.deploy.model import DeployRecord
from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import LOG, record_key
from tests.incidents.support import alert, notification
from tests.support.hooks import note_hook
from tests.support.procs import configured_stack, deploys_settled, post_delivery, wait_until

PROJECT, OPS = 15, 30
ALICE = 7
OLD, SHA = "a" * 40, "c" * 40
IMAGE = "registry.example.com/shop/web:{sha}"
STAGING = "shop-staging"
TOKEN = "alertmanager-e2e-token"


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, kube, health, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("incidents")
    config = {
        "access": {"staging": {"min_access": "developer"}},
        "incidents": {"project": "acme/ops", "rollback_window": "30m", "reopen_window": "1h"},
        "environments": {"staging": {
            "credentials": {"mode": "host", "host": kube.url, "verify_ssl": False},
            "namespace": STAGING, "deployment": "web", "container": "app", "image": IMAGE,
            "health_checks": [{"url": health.url + "/healthz", "successes": 1, "failures": 2,
                               "timeout": 1}],
            "verification": {"interval": 0.05, "timeout": 3.0},
            "timings": {"poll_interval": 0.05, "rollout_timeout": 30.0, "api_error_retries": 3},
            "alerts": {"auto_rollback_on_alert": True, "project": str(PROJECT),
                       "selector": ['alertname=~"High.*"'], "min_severity": "critical"},
        }},
    }
    with configured_stack(config, tmp, redis_server.client_url(), fake_gitlab_process,
                          ALERTMANAGER_TOKEN=TOKEN) as stack:
        yield {"url": stack.url}


@pytest.fixture
def gl(stack, fake_gitlab_proc, kube, health, redis_client):
    fake = fake_gitlab_proc
    fake.add_user("dev-alice", id=ALICE)
    fake.add_project("acme/shop", id=PROJECT, members={ALICE: 30})
    fake.add_project("acme/ops", id=OPS)
    fake.add_issue(PROJECT, "Release checkout fix", iid=42)
    fake.add_pipeline(PROJECT, ref="main", status="success", sha=SHA,
                      jobs=[{"name": "build", "status": "success"}])
    with kube.lock:
        kube.objects.clear()
        kube._write_hooks.clear()
        kube.image_behavior.clear()
    kube.add_deployment(STAGING, "web", IMAGE.format(sha=OLD))
    health.set_status("/healthz", 200)
    yield fake
    deploys_settled(redis_client)


def send_alerts(stack, payload: dict, **headers: str) -> requests.Response:
    h = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.27.0",
         "Authorization": f"Bearer {TOKEN}", **headers}
    return requests.post(stack["url"] + "/webhooks/alertmanager", data=orjson.dumps(payload),
                         headers=h, timeout=10)


def processed(stack, redis_client, payload: dict) -> str:
    r = send_alerts(stack, payload)
    assert r.status_code == 202, r.text
    delivery = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery), "status") == b"done", timeout=30,
               what="the notification to be processed")
    return delivery


def api(gl) -> GitLabAdapter:
    return GitLabAdapter(gl.url, gl.token)


def incident_issues(gl) -> list[dict]:
    return [i for i in api(gl).find_issues(OPS, state="all")
            if "devops-agent:incident:" in (i.get("description") or "")]


def note_with(gl, project: int, iid: int, tag: str) -> str:
    return next((n["body"] for n in api(gl).list_notes(project, "issue", iid)
                 if tag in n["body"]), "")


def image(kube) -> str:
    return kube.get("deployments", STAGING, "web")["spec"]["template"]["spec"]["containers"][0]["image"]


def test_firing_opens_an_incident_edited_in_place_and_closed_on_resolve(stack, gl, redis_client):
    now = time.time()
    first = notification(alert(starts=now, namespace="other", deployment="api"))
    processed(stack, redis_client, first)
    [issue] = incident_issues(gl)
    assert issue["state"] == "opened"
    assert sorted(issue["labels"]) == ["incident", "incident::firing", "severity::critical"]
    # Alertmanager's repeat_interval re-sends the same notification: a duplicate
    again = send_alerts(stack, first)
    assert again.status_code == 200 and again.json()["status"] == "duplicate", again.text
    processed(stack, redis_client, notification(
        alert(starts=now, namespace="other", deployment="api"),
        alert(starts=now + 30, fingerprint="0123456789abcdef", severity="warning",
              namespace="other", deployment="api")))
    [same] = incident_issues(gl)
    assert same["iid"] == issue["iid"] and "2 of 2 alert(s) firing" in same["description"]
    processed(stack, redis_client, notification(
        alert(status="resolved", starts=now, ends=now + 60, namespace="other", deployment="api"),
        alert(status="resolved", starts=now + 30, ends=now + 60, fingerprint="0123456789abcdef",
              severity="warning", namespace="other", deployment="api")))
    [closed] = incident_issues(gl)
    assert closed["iid"] == issue["iid"] and closed["state"] == "closed"
    assert "incident::resolved" in closed["labels"] and "incident::firing" not in closed["labels"]
    assert "✅ resolved" in closed["description"]


def _ten_minutes_ago(redis_client) -> DeployRecord:
    """The deploy went live ten minutes before the alert: its record says so (the service's
    own store, shifted in time; nothing else about it changes)."""
    [key] = [k for k in redis_client.scan_iter(keys.record("*")) if redis_client.type(k) == b"string"]
    rec = DeployRecord.from_json(redis_client.get(key))
    rec.created_at -= 600
    rec.updated_at -= 600
    rec.timeline = [(t - 600, text) for t, text in rec.timeline]
    redis_client.set(key, rec.to_json(), keepttl=True)
    return rec


def test_an_alert_after_a_deploy_rolls_it_back_and_reports_everywhere(stack, gl, kube,
                                                                      redis_client):
    payload = note_hook(gl, PROJECT, 42, "/devops deploy staging", ALICE, "dev-alice")
    r = post_delivery(stack["url"], orjson.dumps(payload), "Note Hook", key=str(uuid.uuid4()))
    assert r.status_code == 202
    deploy_marker = f"devops-agent:cmd:{payload['object_attributes']['id']}:0"
    wait_until(lambda: "✅ deploy of `staging` done" in note_with(gl, PROJECT, 42, deploy_marker),
               timeout=40, what="the deploy to succeed")
    assert image(kube) == IMAGE.format(sha=SHA)
    rec = _ten_minutes_ago(redis_client)

    firing = notification(alert(starts=time.time(), namespace=STAGING, deployment="web"))
    processed(stack, redis_client, firing)
    wait_until(lambda: image(kube) == IMAGE.format(sha=OLD), timeout=40,
               what="the rollback to restore the old image")

    def reported() -> dict | None:
        [issue] = incident_issues(gl)
        return issue if "✅ Automatic rollback" in issue["description"] else None

    issue = wait_until(reported, timeout=40, what="the incident to report the rollback")
    body = issue["description"]
    assert f"Deploy `{rec.id}`" in body and "by @dev-alice" in body, body
    assert "live 10 min before the alert started, requested from acme/shop#42" in body, body
    assert f"Verified: `staging` runs `{IMAGE.format(sha=OLD)}`" in body, body
    assert "alert `HighErrorRate` (critical)" in body

    # The deploy's thread: one comment about the incident, and the rollback's own reply,
    # quoting which alert triggered it and ending with the service's verdict.
    thread = [n["body"] for n in api(gl).list_notes(PROJECT, "issue", 42)]
    about = [b for b in thread if "devops-agent:incident:" in b]
    assert len(about) == 1 and f"Incident acme/ops#{issue['iid']}" in about[0], about
    rollback_reply = wait_until(lambda: next((b for b in thread_notes(gl) if
                                              "devops-agent:incident-rollback:" in b and
                                              "✅ rollback of `staging` done" in b), ""),
                                timeout=30, what="the rollback's verdict in the deploy thread")
    assert "> automatic rollback of staging: alert HighErrorRate (critical)" in rollback_reply
    assert "@devops-bot" in rollback_reply

    # In the incident too, and a post-mortem with the timeline and the service's questions.
    told = note_with(gl, OPS, issue["iid"], "devops-agent:incident-rollback:")
    assert "✅ Automatic rollback" in told and "Post-mortem: #" in told, told
    [pm] = [i for i in api(gl).find_issues(OPS, state="all")
            if "devops-agent:incident-postmortem:" in (i.get("description") or "")]
    for expected in ("deploy live", "started firing", "automatic rollback", "verified from the "
                     "cluster", "### What went wrong?", "### How do we prevent it?"):
        assert expected in pm["description"], (expected, pm["description"])
    assert f"Post-mortem: #{pm['iid']}" in issue["description"]

    # Another alert of the group, the first one re-sent: one issue, still one rollback.
    later = time.time()
    second = alert(starts=later, fingerprint="1" * 16, namespace=STAGING, deployment="web")
    processed(stack, redis_client, notification(second, *firing["alerts"]))
    rollbacks = [k for k in redis_client.scan_iter(keys.record("*"))
                 if redis_client.type(k) == b"string"
                 and DeployRecord.from_json(redis_client.get(k)).kind == "rollback"]
    assert len(rollbacks) == 1 and len(incident_issues(gl)) == 1

    # Resolved: the post-mortem's timeline gets the resolve, the incident closes.
    processed(stack, redis_client, notification(
        alert(status="resolved", starts=later, ends=time.time(), fingerprint="1" * 16,
              namespace=STAGING, deployment="web"),
        {**firing["alerts"][0], "status": "resolved", "endsAt": second["startsAt"]}))
    [done] = incident_issues(gl)
    assert done["state"] == "closed"
    [pm] = [i for i in api(gl).find_issues(OPS, state="all")
            if "devops-agent:incident-postmortem:" in (i.get("description") or "")]
    assert "all alerts resolved" in pm["description"]


def thread_notes(gl) -> list[str]:
    return [n["body"] for n in api(gl).list_notes(PROJECT, "issue", 42)]


@pytest.mark.parametrize(("headers", "body", "status", "says"), [
    ({"Authorization": ""}, None, 401, "missing Authorization"),
    ({"Authorization": "Bearer wrong-token-123"}, None, 401, "not valid"),
    ({"Authorization": "Basic Zm9vOmJhcg=="}, None, 401, "not valid"),
    ({}, b"{not json", 400, "not valid JSON"),
    ({}, orjson.dumps({**notification(alert(starts=0)), "version": "3"}), 400, "version"),
    ({}, orjson.dumps({**notification(alert(starts=0)), "alerts": []}), 400, "alerts"),
    ({}, orjson.dumps(notification(*[alert(starts=0, fingerprint=f"{i:016x}")
                                     for i in range(501)])), 413, "at most 500"),
    ({}, b'{"version": "4"}', 400, "groupKey"),
    ({"Content-Type": "text/plain"}, None, 415, "Content-Type"),
])
def test_hostile_or_malformed_bodies_are_refused_and_nothing_is_lost(stack, gl, redis_client,
                                                                     headers, body, status, says):
    processed(stack, redis_client, notification(alert(starts=time.time())))
    before = redis_client.zcard(LOG)
    h = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}", **headers}
    r = requests.post(stack["url"] + "/webhooks/alertmanager",
                      data=body if body is not None else orjson.dumps(notification(alert(starts=0))),
                      headers=h, timeout=10)
    assert r.status_code == status, r.text
    assert r.json()["status"] == "refused" and says in r.json()["error"], r.text
    assert TOKEN not in r.text
    assert redis_client.zcard(LOG) == before          # nothing recorded
    assert len(incident_issues(gl)) == 1              # what was there before is untouched
