"""A default install (no `environments:` configured) deploys nothing and claims nothing."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import record_key
from tests.support.hooks import label_hook, note_hook
from tests.support.procs import Stack, base_env, post_delivery, wait_until

PROJECT, ALICE = 15, 7


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, tmp_path_factory):
    env = base_env(redis_server.client_url(), GITLAB_URL=fake_gitlab_process.url,
                   GITLAB_TOKEN=fake_gitlab_process.token, GITLAB_PROJECTS="15")
    stack = Stack(env, tmp_path_factory.mktemp("no-targets"))
    yield {"url": stack.url}
    stack.close()


@pytest.fixture
def gl(stack, fake_gitlab_proc):
    fake_gitlab_proc.add_user("dev-alice", id=ALICE)
    fake_gitlab_proc.add_project("acme/shop", id=PROJECT, members={ALICE: 30})
    fake_gitlab_proc.add_issue(PROJECT, "Ship it", iid=42)
    fake_gitlab_proc.add_pipeline(PROJECT, ref="main", status="success", sha="c" * 40,
                                  jobs=[{"name": "build", "status": "success"}])
    return fake_gitlab_proc


def send(stack, redis_client, payload, event):
    r = post_delivery(stack["url"], orjson.dumps(payload), event, key=str(uuid.uuid4()))
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
               timeout=30, what="the delivery to be processed")


def test_a_default_install_refuses_to_pretend(stack, gl, redis_client):
    send(stack, redis_client, note_hook(gl, PROJECT, 42, "/devops deploy staging", ALICE, "dev-alice"),
         "Note Hook")
    send(stack, redis_client, label_hook(gl, PROJECT, 42, "deploy::staging", ALICE, "dev-alice"),
         "Issue Hook")
    api = GitLabAdapter(gl.url, gl.token)
    bodies = [n["body"] for n in api.list_notes(PROJECT, "issue", 42) if "devops-agent:" in n["body"]]
    assert len(bodies) == 2
    assert all("no target configured for `staging`: nothing was deployed" in b for b in bodies)
    assert not any("✅" in b for b in bodies)
    labels = api.get_issue(PROJECT, 42)["labels"]
    assert not any(l.startswith(("env::", "deploy::")) for l in labels)
    assert list(redis_client.scan_iter("da:deploy:record:*")) == []
