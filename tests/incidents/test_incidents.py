"""The incident handler's plain functions with the recording GitLab and a real Redis: mapping,
dedup, rendering (hostile text included), correlation with deploy records, find-or-create."""

from __future__ import annotations

import pytest

from tasks.config.agent import AgentConfig
from tasks.config.environments import parse_environments
from tasks.config.incidents import IncidentsConfig
from tasks.config.matchers import matches_all, parse_matcher
from tasks.config.settings import load_settings
from tasks.deploy import keys
from tasks.deploy.model import DeployRecord
from tasks.deploy.store import DeployStore
from tasks.gitlab.events import parse_event
from tasks.incidents import correlate, intake, render
from tasks.incidents.escape import text
from tasks.incidents.handler import process
from tasks.incidents.mapping import target_for
from tasks.incidents.store import IncidentStore, digest
from tasks.worker.context import HandlerContext
from tests.incidents.support import alert, notification
from tests.support.recording_gitlab import RecordingGitLab

OPS, SHOP = "acme/ops", "acme/shop"
NOW = 1_750_000_000.0
ENVS = parse_environments({"environments": {
    "staging": {"namespace": "shop-staging", "deployment": "web", "container": "app",
                "image": "registry.example/web:{sha}", "alerts": {"project": SHOP}},
    "production": {"namespace": "shop-prod", "deployment": "web", "container": "app",
                   "image": "registry.example/web:{sha}",
                   "strategy": {"type": "blue_green", "service": "web"}},
}}, "test")


@pytest.fixture
def gl():
    fake = RecordingGitLab()
    fake.add_project(OPS, id=30)
    fake.add_project(SHOP, id=15)
    return fake


def make_ctx(redis_client, gl, **incidents):
    settings = load_settings({"WEBHOOK_SECRET": "x" * 16, "GITLAB_PROJECTS": "acme/*"})
    config = AgentConfig(incidents=IncidentsConfig(project=OPS, **incidents),
                         environments=ENVS)
    return HandlerContext(settings=settings, redis=redis_client, gitlab=gl, config=config,
                          enqueued=[])


def run(ctx, payload, now=NOW):
    return process(ctx, parse_event("alert", intake.validate(payload)), now=now)


def issues(gl, project=OPS):
    return {iid: i for (path, iid), i in gl.issues.items() if path == project}


# -- mapping ---------------------------------------------------------------------------------
def test_an_explicit_label_names_the_environment_and_project():
    cfg = IncidentsConfig(project=OPS)
    t = target_for({"devops_agent_env": "production", "devops_agent_project": "acme/web"},
                   cfg, ENVS)
    assert (t.env, t.project) == ("production", "acme/web")
    assert target_for({"devops_agent_env": "nope"}, cfg, ENVS).env is None


def test_namespace_and_deployment_find_the_environment_and_its_project():
    cfg = IncidentsConfig(project=OPS, default_project="acme/other")
    t = target_for({"namespace": "shop-staging", "deployment": "web"}, cfg, ENVS)
    assert (t.env, t.project) == ("staging", SHOP)  # the environment's own project wins
    # blue-green: each colour's Deployment belongs to the environment
    t = target_for({"namespace": "shop-prod", "deployment": "web-green"}, cfg, ENVS)
    assert (t.env, t.project) == ("production", "acme/other")
    assert target_for({"namespace": "shop-prod", "deployment": "api"}, cfg, ENVS).env is None


def test_severity_aliases_and_ranks():
    cfg = IncidentsConfig(project=OPS)
    assert cfg.severity("PAGE") == "critical" and cfg.severity("warning") == "warning"
    assert cfg.severity("weird") == "unknown" and cfg.rank("unknown") < cfg.rank("info")


def test_matchers_mean_what_alertmanager_means():
    ms = (parse_matcher('alertname=~"High.*"'), parse_matcher('team!="db"'))
    assert matches_all(ms, {"alertname": "HighErrorRate", "team": "shop"})
    assert not matches_all(ms, {"alertname": "xHighErrorRate"})  # anchored
    assert not matches_all(ms, {"alertname": "HighLatency", "team": "db"})
    with pytest.raises(ValueError):
        parse_matcher("alertname")


# -- dedup -----------------------------------------------------------------------------------
def test_a_repeat_is_the_same_notification_and_a_new_firing_is_not():
    first = notification(alert(starts=NOW))
    assert intake.dedup_key(first) == intake.dedup_key(notification(alert(starts=NOW)))
    assert intake.dedup_key(first) != intake.dedup_key(notification(alert(starts=NOW + 900)))
    resolved = notification(alert(status="resolved", starts=NOW, ends=NOW + 60))
    assert intake.dedup_key(first) != intake.dedup_key(resolved)
    other_group = notification(alert(starts=NOW), group_key='{}:{alertname="Other"}')
    assert intake.dedup_key(first) != intake.dedup_key(other_group)


# -- rendering -------------------------------------------------------------------------------
def test_hostile_text_is_plain_text():
    out = text("<script>alert(1)</script> @all see #1 [x](javascript:alert(1)) |cell|\n/close")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "@all" not in out and "#1" not in out          # no mention, no reference
    assert "](" not in out and "\\|" in out and "\n" not in out
    assert not out.startswith("/")
    assert render.link("javascript:alert(1)", "x") == ""
    assert render.link("http://p.example/a b)c", "graph") == "[graph](http://p.example/a%20b%29c)"


def test_a_100_kb_annotation_is_cut_short(redis_client, gl):
    ctx = make_ctx(redis_client, gl)
    run(ctx, notification(alert(starts=NOW, description="x" * 100_000,
                                namespace="shop-staging", deployment="web")))
    [issue] = issues(gl).values()
    assert len(issue["description"]) < 10_000
    assert "x" * 300 + "…" in issue["description"]


# -- the handler -----------------------------------------------------------------------------
def test_firing_opens_one_issue_and_a_second_firing_edits_it(redis_client, gl):
    ctx = make_ctx(redis_client, gl)
    run(ctx, notification(alert(starts=NOW, namespace="shop-staging", deployment="web")))
    [(iid, issue)] = issues(gl).items()
    assert issue["title"] == "Incident: HighErrorRate on staging"
    assert sorted(issue["labels"]) == ["incident", "incident::firing", "severity::critical"]
    assert "🔥 firing: 1 of 1 alert(s) firing" in issue["description"]
    assert "No deploy of `staging` in the 30 min before the alert started." in issue["description"]

    run(ctx, notification(alert(starts=NOW, namespace="shop-staging", deployment="web"),
                          alert("HighErrorRate", starts=NOW + 60, fingerprint="ffff000011112222",
                                severity="warning", namespace="shop-staging", deployment="web")))
    assert list(issues(gl)) == [iid]
    assert "2 of 2 alert(s) firing" in issues(gl)[iid]["description"]
    # redelivered: nothing is written again
    before = len(gl.effects)
    run(ctx, notification(alert(starts=NOW, namespace="shop-staging", deployment="web"),
                          alert("HighErrorRate", starts=NOW + 60, fingerprint="ffff000011112222",
                                severity="warning", namespace="shop-staging", deployment="web")))
    assert gl.effects[before:] == []


def test_a_lost_redis_record_finds_the_issue_by_its_marker(redis_client, gl):
    ctx = make_ctx(redis_client, gl)
    payload = notification(alert(starts=NOW))
    run(ctx, payload)
    redis_client.flushall()
    run(ctx, notification(alert(starts=NOW), alert(starts=NOW, fingerprint="9" * 16)))
    assert len(issues(gl)) == 1
    assert "2 of 2" in next(iter(issues(gl).values()))["description"]


def test_resolved_closes_with_a_summary_or_leaves_it_open(redis_client, gl):
    ctx = make_ctx(redis_client, gl)
    run(ctx, notification(alert(starts=NOW)))
    run(ctx, notification(alert(status="resolved", starts=NOW, ends=NOW + 300)), now=NOW + 310)
    [issue] = issues(gl).values()
    assert issue["state"] == "closed"
    assert sorted(issue["labels"]) == ["incident", "incident::resolved", "severity::critical"]
    assert "✅ resolved" in issue["description"] and "all alerts resolved" in issue["description"]

    kept = make_ctx(redis_client, gl, close_on_resolve=False)
    run(kept, notification(alert(starts=NOW), group_key="other"))
    run(kept, notification(alert(status="resolved", starts=NOW, ends=NOW + 300),
                           group_key="other"), now=NOW + 310)
    states = sorted(i["state"] for i in issues(gl).values())
    assert states == ["closed", "opened"]


def test_a_refire_within_the_window_reopens_and_after_it_opens_a_new_issue(redis_client, gl):
    ctx = make_ctx(redis_client, gl, reopen_window="1h")
    run(ctx, notification(alert(starts=NOW)))
    run(ctx, notification(alert(status="resolved", starts=NOW, ends=NOW + 60)), now=NOW + 60)
    run(ctx, notification(alert(starts=NOW + 600)), now=NOW + 600)
    [issue] = issues(gl).values()
    assert issue["state"] == "opened" and "fired again" in issue["description"]
    run(ctx, notification(alert(status="resolved", starts=NOW + 600, ends=NOW + 700)),
        now=NOW + 700)
    run(ctx, notification(alert(starts=NOW + 9000)), now=NOW + 9000)
    assert sorted(i["state"] for i in issues(gl).values()) == ["closed", "opened"]


def test_an_older_copy_saying_firing_does_not_undo_a_resolve(redis_client, gl):
    ctx = make_ctx(redis_client, gl)
    run(ctx, notification(alert(status="resolved", starts=NOW, ends=NOW + 60)), now=NOW + 60)
    run(ctx, notification(alert(starts=NOW)), now=NOW + 61)
    [issue] = issues(gl).values()
    assert issue["state"] == "closed"


def deploy(redis_client, *, created: float, live: float, handle: str = "h1",
           status: str = "succeeded") -> DeployRecord:
    rec = DeployRecord(id=f"staging-{int(created)}", kind="deploy", project="15", env="staging",
                       strategy="rolling", requested_by="dev-alice", sha="c" * 40, ref="main",
                       image="registry.example/web:" + "c" * 40, status=status,
                       created_at=created, updated_at=live, handle=handle,
                       timeline=[(created, "requested"), (live, "succeeded")])
    store = DeployStore(redis_client)
    store.save(rec)
    store.finished(rec)
    return rec


def test_correlation_picks_the_deploy_just_before_the_alert():
    def rec(i, created, live, status="succeeded", kind="deploy"):
        return DeployRecord(id=str(i), kind=kind, project="15", env="staging", strategy="rolling",
                            requested_by="x", status=status, created_at=created,
                            timeline=[(created, "a"), (live, "b")])
    started, window = NOW, 1800
    newest_first = [rec(4, NOW + 10, NOW + 20), rec(3, NOW - 700, NOW - 600),
                    rec(2, NOW - 800, NOW - 700, status="rolled_back"), rec(1, NOW - 4000, NOW - 3900)]
    assert correlate.suspect(newest_first, started, window).id == "3"
    assert correlate.suspect([rec(1, NOW - 4000, NOW - 3900)], started, window) is None
    # still verifying when the alert began: suspected too
    assert correlate.suspect([rec(5, NOW - 30, NOW + 30)], started, window).id == "5"
    assert correlate.suspect([rec(6, NOW - 700, NOW - 600, kind="rollback")], started, window) is None


def test_the_incident_names_the_deploy_and_comments_once_in_its_thread(redis_client, gl):
    gl.add_mr(SHOP, 7, "Checkout fix")
    redis_client.set(keys.context("h1"), b'{"project": 15, "reply_to": ["mr", 7, "cmd:1:0"], '
                                         b'"requested_by": "dev-alice"}')
    deploy(redis_client, created=NOW - 700, live=NOW - 600)
    ctx = make_ctx(redis_client, gl)
    run(ctx, notification(alert(starts=NOW, namespace="shop-staging", deployment="web")))
    [issue] = issues(gl).values()
    body = issue["description"]
    assert "Deploy `staging-1749999300`" in body and "by @dev-alice" in body, body
    assert "live 10 min before the alert started, requested from acme/shop!7" in body
    run(ctx, notification(alert(starts=NOW, namespace="shop-staging", deployment="web"),
                          alert(starts=NOW + 5, fingerprint="7" * 16, namespace="shop-staging",
                                deployment="web")))
    notes = [n for n in gl.notes[(SHOP, "mr", 7)] if "devops-agent:incident:" in n["body"]]
    assert len(notes) == 1
    assert f"Incident acme/ops#{issue['iid']}" in notes[0]["body"]
    assert ctx.enqueued == []  # auto_rollback_on_alert is off for staging here


def test_a_deploy_outside_the_window_is_not_suspected(redis_client, gl):
    deploy(redis_client, created=NOW - 4000, live=NOW - 3900)
    ctx = make_ctx(redis_client, gl)
    run(ctx, notification(alert(starts=NOW, namespace="shop-staging", deployment="web")))
    [issue] = issues(gl).values()
    assert "No deploy of `staging` in the 30 min" in issue["description"]


def test_a_project_outside_gitlab_projects_is_not_correlated(redis_client, gl):
    gl.add_project("evil/x", id=99)
    ctx = make_ctx(redis_client, gl)
    run(ctx, notification(alert(starts=NOW, devops_agent_env="staging",
                                devops_agent_project="evil/x")))
    [issue] = issues(gl).values()
    assert "evil/x is not in GITLAB\\_PROJECTS" in issue["description"], issue["description"]


def test_incidents_are_off_without_a_project(redis_client, gl):
    ctx = make_ctx(redis_client, gl)
    ctx.config = AgentConfig()
    out = run(ctx, notification(alert(starts=NOW)))
    assert out["action"] == "ignored" and issues(gl) == {}
    assert IncidentStore(redis_client).load(digest('{}:{alertname="HighErrorRate"}')) is None

