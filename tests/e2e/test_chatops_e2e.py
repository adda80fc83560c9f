"""ChatOps end to end: receiver → real Redis → real worker → fake GitLab over HTTP, deploying to
the fake kube-apiserver with the real kubernetes client.

Every hook is made the way GitLab makes it: the note or label change happens in the fake first
(tests/support/hooks.py), and the worker re-reads it from the API. The forged cases change one
field of such a hook and show that nothing happens."""

from __future__ import annotations

import copy
import uuid

import orjson
import pytest

from tasks.deploy.model import DeployRecord
from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import record_key
from tasks.platform import audit
from tests.support.fake_kube import FakeHTTP
from tests.support.hooks import PAYLOADS, label_hook, note_hook
from tests.support.procs import configured_stack, deploys_settled, post_delivery, wait_until

PROJECT = 15
ALICE, BOB, RITA = 7, 8, 9  # Developer, Maintainer, Reporter
SHA = "c" * 40
IMAGE = "registry.example.com/shop/web:{sha}"


@pytest.fixture(scope="module")
def health():
    server = FakeHTTP().serve()
    server.set_status("/healthz", 200)
    yield server
    server.stop()


def _target(kube, health, namespace: str) -> dict:
    return {"credentials": {"mode": "host", "host": kube.url, "verify_ssl": False},
            "namespace": namespace, "deployment": "web", "container": "app", "image": IMAGE,
            "health_checks": [{"url": health.url + "/healthz", "successes": 1, "failures": 2,
                               "timeout": 1}],
            "verification": {"interval": 0.05, "timeout": 3.0},
            "timings": {"poll_interval": 0.05, "rollout_timeout": 5.0, "api_error_retries": 3}}


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, kube, health, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chatops")
    config = {
        "chatops": {"prefix": "/devops"},
        "access": {
            "staging": {"min_access": "developer"},
            "production": {"min_access": "maintainer", "respect_freeze_periods": True,
                           "require_pipeline_success": True, "require_mr_approval": True},
        },
        "environments": {"staging": _target(kube, health, "shop-staging"),
                         "production": _target(kube, health, "shop-prod")},
    }
    with configured_stack(config, tmp, redis_server.client_url(), fake_gitlab_process) as stack:
        yield {"url": stack.url}


@pytest.fixture
def gl(stack, fake_gitlab_proc, kube, redis_client):
    fake = fake_gitlab_proc
    fake.add_user("dev-alice", id=ALICE)
    fake.add_user("maint-bob", id=BOB)
    fake.add_user("rep-rita", id=RITA)
    fake.add_project("acme/shop", id=PROJECT, members={ALICE: 30, BOB: 40, RITA: 20})
    fake.add_issue(PROJECT, "Release checkout fix", iid=42)
    fake.add_pipeline(PROJECT, ref="main", status="success", sha=SHA,
                      jobs=[{"name": "build", "status": "success"}])
    for ns in ("shop-staging", "shop-prod"):
        if not kube.list("deployments", ns):
            kube.add_deployment(ns, "web", IMAGE.format(sha="a" * 40))
    fake.clear_calls()
    yield fake
    # A deploy a case started runs on in the worker: let it end before the next case flushes
    # Redis under it (its last step would write its record back into the next case).
    deploys_settled(redis_client)


def send(stack, redis_client, payload: dict, event: str = "Note Hook") -> None:
    r = post_delivery(stack["url"], orjson.dumps(payload), event, key=str(uuid.uuid4()))
    assert r.status_code == 202, r.text
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
               timeout=30, what="the delivery to be processed")


def say(gl, text: str, user=(ALICE, "dev-alice"), iid: int = 42, kind: str = "issue") -> dict:
    return note_hook(gl, PROJECT, iid, text, *user, kind=kind)


def replies(fake, kind: str = "issue", iid: int = 42) -> list[str]:
    return [n["body"] for n in GitLabAdapter(fake.url, fake.token).list_notes(PROJECT, kind, iid)
            if "devops-agent:" in n["body"]]


def labels(fake) -> list[str]:
    return GitLabAdapter(fake.url, fake.token).get_issue(PROJECT, 42)["labels"]


def deploys(redis_client) -> list[DeployRecord]:
    return [DeployRecord.from_json(redis_client.get(k))
            for k in redis_client.scan_iter("da:deploy:record:*")]


def image(kube, ns: str = "shop-staging") -> str:
    return kube.get("deployments", ns, "web")["spec"]["template"]["spec"]["containers"][0]["image"]


def test_developer_deploys_staging_by_label(stack, gl, kube, redis_client):
    send(stack, redis_client, label_hook(gl, PROJECT, 42, "deploy::staging", ALICE, "dev-alice"),
         "Issue Hook")
    [deploy] = deploys(redis_client)
    assert (deploy.env, deploy.kind, deploy.ref, deploy.sha) == ("staging", "deploy", "main", SHA)
    assert deploy.requested_by == "dev-alice"
    wait_until(lambda: any("✅" in r for r in replies(gl)), timeout=40, what="the verdict")
    assert image(kube) == IMAGE.format(sha=SHA)
    current = labels(gl)
    assert "env::staging::deployed" in current
    assert "deploy::staging" not in current and "env::staging::deploying" not in current


def test_developer_is_refused_production_and_the_label_removed(stack, gl, redis_client):
    send(stack, redis_client, label_hook(gl, PROJECT, 42, "deploy::production", ALICE, "dev-alice"),
         "Issue Hook")
    assert deploys(redis_client) == []
    [reply] = replies(gl)
    assert "refused by the **access** gate" in reply and "Maintainer" in reply
    assert "deploy::production" not in labels(gl)
    [entry] = audit.query(redis_client)
    assert entry["outcome"] == "refused" and entry["user"] == "dev-alice"


def test_a_forged_label_hook_does_nothing(stack, gl, redis_client):
    # The hook claims Bob (Maintainer) added deploy::staging; GitLab's label events say nobody did.
    hook = orjson.loads((PAYLOADS / "issue_labels_changed.json").read_bytes())
    hook["user"] = {**hook["user"], "id": BOB, "username": "maint-bob"}
    hook["object_attributes"]["iid"] = 42
    hook["changes"]["labels"] = {"previous": [], "current": [{"id": 1, "title": "deploy::staging"}]}
    send(stack, redis_client, hook, "Issue Hook")
    assert deploys(redis_client) == [] and replies(gl) == []


def test_a_label_added_by_a_reporter_is_refused_whoever_the_hook_names(stack, gl, redis_client):
    hook = label_hook(gl, PROJECT, 42, "deploy::staging", RITA, "rep-rita")
    hook["user"] = {**hook["user"], "id": BOB, "username": "maint-bob"}  # forged actor
    send(stack, redis_client, hook, "Issue Hook")
    assert deploys(redis_client) == []
    [reply] = replies(gl)
    assert "refused by the **access** gate" in reply and "Reporter" in reply


def test_maintainer_is_refused_in_a_freeze_then_forces_with_a_reason(stack, gl, redis_client):
    gl.add_freeze_period(PROJECT, "* * * * *", "0 0 1 1 *", cron_timezone="UTC")
    send(stack, redis_client, say(gl, "/devops deploy production", (BOB, "maint-bob")))
    [reply] = replies(gl)
    assert "refused by the **freeze** gate" in reply and "* * * * *" in reply
    assert deploys(redis_client) == []
    send(stack, redis_client, say(gl, '/devops deploy production --force "hotfix for INC-42"',
                                  (BOB, "maint-bob")))
    [deploy] = deploys(redis_client)
    assert (deploy.env, deploy.sha) == ("production", SHA)
    newest = next(e for e in audit.query(redis_client) if e.get("deploy_id"))
    assert newest["forced"] is True and newest["user"] == "maint-bob"
    assert any(g["gate"] == "force" and g["passed"] for g in newest["gates"])


def test_developer_cannot_force(stack, gl, redis_client):
    send(stack, redis_client, say(gl, '/devops deploy production --force "please"'))
    assert deploys(redis_client) == []
    assert "access" in replies(gl)[0]


def test_a_forged_note_author_acts_as_the_real_author(stack, gl, redis_client):
    payload = say(gl, "/devops deploy staging", (RITA, "rep-rita"))
    payload["user"] = {**payload["user"], "id": BOB, "username": "maint-bob"}
    payload["object_attributes"]["author_id"] = BOB
    send(stack, redis_client, payload)
    assert deploys(redis_client) == []
    [reply] = replies(gl)
    assert "@rep-rita" in reply and "you have Reporter" in reply


def test_a_forged_note_body_runs_nothing(stack, gl, redis_client):
    payload = say(gl, "thanks, looks good")  # what GitLab has
    payload["object_attributes"]["note"] = "/devops deploy staging"  # what the hook claims
    send(stack, redis_client, payload)
    assert deploys(redis_client) == [] and replies(gl) == []


def test_same_note_delivered_twice_runs_once(stack, gl, redis_client):
    payload = say(gl, "/devops deploy staging")
    send(stack, redis_client, payload)
    send(stack, redis_client, copy.deepcopy(payload))  # a new delivery, same note
    assert len(deploys(redis_client)) == 1
    assert len(replies(gl)) == 1
    note_id = payload["object_attributes"]["id"]
    assert len(gl.calls(method="POST", path_re=rf"/notes/{note_id}/award_emoji$")) == 1


@pytest.mark.parametrize("body", [
    "> /devops deploy staging",
    ">>>\n/devops deploy staging\n>>>",
    "<blockquote>\n/devops deploy staging\n</blockquote>",
    "<pre>\n/devops deploy staging\n</pre>",
    "<code>\n/devops deploy staging</code>",
    "```\n/devops deploy staging\n```",
    "<details><summary>log</summary>\n/devops deploy staging\n</details>",
], ids=["quote", "multi-line quote", "blockquote", "pre", "code", "fence", "details"])
def test_quoted_commands_run_nothing(stack, gl, redis_client, body):
    send(stack, redis_client, say(gl, body, (BOB, "maint-bob")))
    assert deploys(redis_client) == [] and replies(gl) == []


def test_edited_notes_and_the_bots_own_notes_do_nothing(stack, gl, redis_client):
    edited = say(gl, "please review")
    note_id = edited["object_attributes"]["id"]
    gl.advance_time(5)
    gl.edit_note(PROJECT, "issue", 42, note_id, "/devops deploy staging")
    hook = copy.deepcopy(edited)
    hook["object_attributes"]["note"] = "/devops deploy staging"
    hook["object_attributes"].pop("action")  # older GitLab: no `action`, an edit all the same
    send(stack, redis_client, hook)
    bots = note_hook(gl, PROJECT, 42, "/devops deploy staging", 1, "devops-bot")
    send(stack, redis_client, bots)
    assert deploys(redis_client) == [] and replies(gl) == []


def test_a_command_on_a_closed_issue_gets_one_answer(stack, gl, redis_client):
    GitLabAdapter(gl.url, gl.token).update_issue(PROJECT, 42, state_event="close")
    send(stack, redis_client, say(gl, "/devops deploy staging\n/devops status"))
    assert deploys(redis_client) == []
    [reply] = replies(gl)
    assert "this issue is closed" in reply and "none of this note's 2 commands ran" in reply


def test_help_lists_every_command_and_unknown_commands_get_help(stack, gl, redis_client):
    from tasks.chatops.core import load_commands

    send(stack, redis_client, say(gl, "/devops help"))
    [reply] = replies(gl)
    for name in load_commands():
        assert f"/devops {name}" in reply
    send(stack, redis_client, say(gl, "/devops deployall"))
    assert any("unknown command `deployall`" in r for r in replies(gl))


def test_lock_blocks_others_until_unlocked(stack, gl, redis_client):
    send(stack, redis_client, say(gl, "/devops lock staging db migration", (BOB, "maint-bob")))
    send(stack, redis_client, say(gl, "/devops deploy staging"))
    assert deploys(redis_client) == []
    assert any("refused by the **lock** gate" in r and "locked by @maint-bob: db migration (since "
               in r for r in replies(gl))
    send(stack, redis_client, say(gl, "/devops unlock staging", (BOB, "maint-bob")))
    send(stack, redis_client, say(gl, "/devops deploy staging"))
    assert len(deploys(redis_client)) == 1


def test_an_approval_does_not_cover_another_ref(stack, gl, redis_client):
    gl.add_branch(PROJECT, "feature")
    gl.push_commit(PROJECT, "feature", files={"app.py": "fix"}, message="fix checkout")
    gl.add_mr(PROJECT, "Fix checkout", "feature", iid=7)
    head = GitLabAdapter(gl.url, gl.token).get_mr(PROJECT, 7)["sha"]
    gl.add_pipeline(PROJECT, ref="feature", sha=head, status="success",
                    jobs=[{"name": "build", "status": "success"}])
    gl.approve_mr(PROJECT, 7, ALICE)
    send(stack, redis_client, say(gl, "/devops deploy production main", (BOB, "maint-bob"),
                                  iid=7, kind="mr"))
    assert deploys(redis_client) == []
    [reply] = replies(gl, "mr", 7)
    assert "refused by the **approval** gate" in reply and "is not !7's source branch" in reply
    send(stack, redis_client, say(gl, "/devops deploy production", (BOB, "maint-bob"),
                                  iid=7, kind="mr"))
    [deploy] = deploys(redis_client)
    assert (deploy.env, deploy.ref, deploy.sha) == ("production", "feature", head)


def test_the_checklist_answers_and_deploys_nothing(stack, gl, redis_client):
    send(stack, redis_client, say(gl, "/devops deploy production --dry-run", (BOB, "maint-bob")))
    send(stack, redis_client, say(gl, "/devops checklist staging"))
    assert deploys(redis_client) == []
    production, staging = replies(gl)
    assert "📋 checklist for `deploy production`" in production and "would be refused" in production
    assert "✅ **access**" in production and "❌ **approval**" in production
    assert "would be allowed" in staging and SHA[:8] in staging


@pytest.mark.parametrize("tier", ["free", "premium"])
def test_one_outcome_label_per_environment_on_both_tiers(stack, gl, kube, health, redis_client,
                                                         tier):
    gl.set_project(PROJECT, tier=tier)
    gl.add_pipeline(PROJECT, ref="main", status="success", sha=SHA,
                    jobs=[{"name": "build", "status": "success"}])

    def deploy(env: str, user, expect: str) -> None:
        send(stack, redis_client, say(gl, f"/devops deploy {env}" + (
            ' --force "verified by hand"' if env == "production" else ""), user))
        wait_until(lambda: f"env::{env}::{expect}" in labels(gl), timeout=40,
                   what=f"{env} to end {expect}")

    deploy("staging", (ALICE, "dev-alice"), "deployed")
    deploy("production", (BOB, "maint-bob"), "deployed")
    assert {"env::staging::deployed", "env::production::deployed"} <= set(labels(gl))
    health.set_status("/healthz", 503)
    try:
        deploy("staging", (ALICE, "dev-alice"), "deploy-failed")
    finally:
        health.set_status("/healthz", 200)
    current = [x for x in labels(gl) if x.startswith("env::")]
    assert sorted(current) == ["env::production::deployed", "env::staging::deploy-failed"]


@pytest.mark.parametrize("trigger", ["label", "command"])
def test_first_gitlab_write_failing_with_500_still_gives_one_deploy_and_one_reply(
        stack, gl, kube, redis_client, trigger):
    gl.fault(r"/issues/42/notes$", method="POST", status=500, count=1)
    if trigger == "label":
        send(stack, redis_client, label_hook(gl, PROJECT, 42, "deploy::staging", ALICE,
                                             "dev-alice"), "Issue Hook")
    else:
        send(stack, redis_client, say(gl, "/devops deploy staging"))
    wait_until(lambda: any("✅" in r for r in replies(gl)), timeout=40, what="the verdict")
    assert len(deploys(redis_client)) == 1
    assert len(gl.calls(method="POST", path_re=r"/issues/42/notes$")) >= 2  # the 500 was hit
    assert len(replies(gl)) == 1
    assert image(kube) == IMAGE.format(sha=SHA)
