"""ChatOps end to end: receiver → real Redis → real worker → fake GitLab (and the recording
deployer that stands in for Kubernetes when no environment has a cluster configured)."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import orjson
import pytest

from tasks import audit
from tasks.adapters.gitlab import GitLabAdapter
from tasks.chatops.deployer import RecordingDeployer
from tasks.inbox import record_key
from tests.support.procs import Stack, base_env, post_delivery, wait_until

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "fixtures" / "payloads"
PROJECT = 15
ALICE, BOB = 7, 8  # Developer, Maintainer


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chatops")
    config = tmp / "config.yaml"
    config.write_text(
        "chatops: {prefix: /devops}\n"
        "access:\n"
        "  staging: {min_access: developer}\n"
        "  production: {min_access: maintainer, respect_freeze_periods: true,\n"
        "               require_pipeline_success: true}\n")
    env = base_env(redis_server.client_url(), GITLAB_URL=fake_gitlab_process.url,
                   GITLAB_TOKEN=fake_gitlab_process.token, GITLAB_PROJECTS="15",
                   DEVOPS_AGENT_CONFIG=str(config))
    stack = Stack(env, tmp)
    yield {"url": stack.url}
    stack.close()


@pytest.fixture
def gl(stack, fake_gitlab_proc, redis_client):
    fake = fake_gitlab_proc
    fake.add_user("dev-alice", id=ALICE)
    fake.add_user("maint-bob", id=BOB)
    fake.add_project("acme/shop", id=PROJECT, members={ALICE: 30, BOB: 40})
    fake.add_issue(PROJECT, "Release checkout fix", iid=42)
    fake.add_pipeline(PROJECT, ref="main", status="success", sha="c" * 40,
                      jobs=[{"name": "build", "status": "success"}])
    fake.clear_calls()
    return fake


def send(stack, redis_client, payload: dict, event: str) -> None:
    r = post_delivery(stack["url"], orjson.dumps(payload), event, key=str(uuid.uuid4()))
    assert r.status_code == 202, r.text
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
               timeout=30, what="the delivery to be processed")


def label_added(label: str, user_id: int, username: str, stamp: str) -> dict:
    payload = orjson.loads((PAYLOADS / "issue_labels_changed.json").read_bytes())
    payload["user"] = {**payload["user"], "id": user_id, "username": username}
    payload["object_attributes"]["updated_at"] = stamp
    previous = [l for l in payload["changes"]["labels"]["previous"]]
    payload["changes"]["labels"]["current"] = previous + [{"id": 900, "title": label}]
    return payload


def note(text: str, note_id: int, user_id: int = ALICE, username: str = "dev-alice") -> dict:
    payload = orjson.loads((PAYLOADS / "note_issue_command.json").read_bytes())
    payload["user"] = {**payload["user"], "id": user_id, "username": username}
    payload["object_attributes"].update(id=note_id, note=text, action="create")
    return payload


def replies(fake) -> list[str]:
    return [n["body"] for n in GitLabAdapter(fake.url, fake.token).list_notes(PROJECT, "issue", 42)
            if "devops-agent:" in n["body"]]


def labels(fake) -> list[str]:
    return GitLabAdapter(fake.url, fake.token).get_issue(PROJECT, 42)["labels"]


def recorded(redis_client) -> list[dict]:
    return RecordingDeployer(redis_client).requests()


def seed_label(fake, label):
    GitLabAdapter(fake.url, fake.token).add_labels(PROJECT, "issue", 42, [label])


def test_developer_deploys_staging_by_label(stack, gl, redis_client):
    seed_label(gl, "deploy::staging")
    send(stack, redis_client, label_added("deploy::staging", ALICE, "dev-alice", "t1"), "Issue Hook")
    [request] = recorded(redis_client)
    assert (request["env"], request["action"], request["ref"]) == ("staging", "deploy", "main")
    assert request["sha"] == "c" * 40 and request["requested_by"] == "dev-alice"
    current = labels(gl)
    assert "deployed::staging" in current
    assert "deploy::staging" not in current and "deploying::staging" not in current
    [reply] = replies(gl)
    assert "✅ deploy of `staging` done" in reply


def test_developer_is_refused_production_and_the_label_removed(stack, gl, redis_client):
    seed_label(gl, "deploy::production")
    send(stack, redis_client, label_added("deploy::production", ALICE, "dev-alice", "t2"),
         "Issue Hook")
    assert recorded(redis_client) == []
    [reply] = replies(gl)
    assert "refused by the **access** gate" in reply and "Maintainer" in reply
    assert "deploy::production" not in labels(gl)
    [entry] = audit.query(redis_client)
    assert entry["outcome"] == "refused" and entry["user"] == "dev-alice"


def test_maintainer_is_refused_in_a_freeze_then_forces_with_a_reason(stack, gl, redis_client):
    gl.add_freeze_period(PROJECT, "* * * * *", "0 0 1 1 *", cron_timezone="UTC")
    send(stack, redis_client, note("/devops deploy production", 4001, BOB, "maint-bob"), "Note Hook")
    [reply] = replies(gl)
    assert "refused by the **freeze** gate" in reply and "* * * * *" in reply
    assert recorded(redis_client) == []
    send(stack, redis_client,
         note('/devops deploy production --force "hotfix for INC-42"', 4002, BOB, "maint-bob"),
         "Note Hook")
    [request] = recorded(redis_client)
    assert request["env"] == "production" and request["reason"] == "hotfix for INC-42"
    newest = audit.query(redis_client)[0]
    assert newest["forced"] is True and newest["user"] == "maint-bob"
    assert any(g["gate"] == "force" and g["passed"] for g in newest["gates"])


def test_developer_cannot_force(stack, gl, redis_client):
    send(stack, redis_client, note('/devops deploy production --force "please"', 4003), "Note Hook")
    assert recorded(redis_client) == []
    assert "access" in replies(gl)[0]


def test_same_note_delivered_twice_runs_once(stack, gl, redis_client):
    payload = note("/devops deploy staging", 4010)
    send(stack, redis_client, payload, "Note Hook")
    send(stack, redis_client, copy.deepcopy(payload), "Note Hook")  # a new delivery, same note
    assert len(recorded(redis_client)) == 1
    assert len(replies(gl)) == 1
    assert len(gl.calls(method="POST", path_re=r"/notes/4010/award_emoji$")) == 1


def test_edited_notes_quotes_and_the_bots_own_notes_do_nothing(stack, gl, redis_client):
    edited = note("/devops deploy staging", 4020)
    edited["object_attributes"]["action"] = "update"
    send(stack, redis_client, edited, "Note Hook")
    send(stack, redis_client, note("> /devops deploy staging", 4021), "Note Hook")
    send(stack, redis_client, note("/devops deploy staging", 4022, 1, "devops-bot"), "Note Hook")
    assert recorded(redis_client) == [] and replies(gl) == []


def test_help_lists_every_command_and_unknown_commands_get_help(stack, gl, redis_client):
    from tasks.chatops.core import load_commands

    send(stack, redis_client, note("/devops help", 4030), "Note Hook")
    [reply] = replies(gl)
    for name in load_commands():
        assert f"/devops {name}" in reply
    send(stack, redis_client, note("/devops deployall", 4031), "Note Hook")
    assert any("unknown command `deployall`" in r for r in replies(gl))


def test_lock_blocks_others_until_unlocked(stack, gl, redis_client):
    send(stack, redis_client, note("/devops lock staging db migration", 4040, BOB, "maint-bob"),
         "Note Hook")
    send(stack, redis_client, note("/devops deploy staging", 4041), "Note Hook")
    assert recorded(redis_client) == []
    assert any("refused by the **lock** gate" in r and "maint-bob" in r for r in replies(gl))
    send(stack, redis_client, note("/devops unlock staging", 4042, BOB, "maint-bob"), "Note Hook")
    send(stack, redis_client, note("/devops deploy staging", 4043), "Note Hook")
    assert len(recorded(redis_client)) == 1
