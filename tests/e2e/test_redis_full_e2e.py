"""Redis at its memory limit (noeviction, as the embedded server runs): the receiver refuses
new deliveries with a 503 instead of acknowledging what it cannot keep, nothing acknowledged is
evicted or lost, and once memory is freed every acknowledged delivery is processed once."""

from __future__ import annotations

import uuid

import pytest
import redis as redis_lib

from tasks.gitlab.client import GitLabAdapter
from tasks.platform.redis_server import RedisServer, free_port
from tests.e2e.test_storm_e2e import hook, seed
from tests.support.procs import base_env, post_delivery, start_web, start_worker, wait_until

PROJECT = 15


def fill(client: redis_lib.Redis) -> int:
    """Write values, smaller and smaller, until Redis refuses even a small one (a big value's
    own request buffer counts against the limit, so the first refusal leaves room)."""
    n = 0
    for size in (256 * 1024, 16 * 1024, 1024, 64):
        chunk = b"x" * size
        while True:
            try:
                client.set(f"junk:{n}", chunk)
            except redis_lib.OutOfMemoryError:
                break
            n += 1
    return n


def test_full_redis_refuses_with_503_and_loses_nothing(fake_gitlab_proc, tmp_path):
    fake = fake_gitlab_proc
    seed(fake)
    server = RedisServer(tmp_path / "redis", port=free_port(), maxmemory="24mb").start()
    client = redis_lib.Redis.from_url(server.client_url())
    env = base_env(server.client_url(), GITLAB_URL=fake.url, GITLAB_TOKEN=fake.token,
                   GITLAB_PROJECTS="acme/*")
    web, url = start_web(env, tmp_path)
    worker = None
    try:
        accepted = [post_delivery(url, hook(i), "Pipeline Hook", key=str(uuid.uuid4()))
                    for i in range(5)]
        assert [r.status_code for r in accepted] == [202] * 5
        assert fill(client) > 0
        refused = []
        for i in range(5, 10):
            # Redis' own buffers shrink and grow between requests: top it up before each.
            fill(client)
            refused.append(post_delivery(url, hook(i), "Pipeline Hook", key=str(uuid.uuid4())))
        assert [r.status_code for r in refused] == [503] * 5
        assert all(r.json()["status"] == "unavailable" for r in refused)
        # Nothing acknowledged was evicted to make room.
        for r in accepted:
            assert client.exists(f"da:inbox:{r.json()['delivery_id']}")
            assert client.exists(f"da:body:{r.json()['delivery_id']}")
        worker = start_worker(env, tmp_path)
        # A worker that starts on a full Redis pops a message and cannot record it as unacked:
        # it must wait for the broker, not stop.
        wait_until(lambda: b"Connection to broker lost" in worker.log_path.read_bytes(),
                   timeout=30, what="the worker meeting the full Redis")
        assert worker.proc.poll() is None
        # Retention frees memory (here: the junk goes); the acknowledged work then completes.
        for key in client.scan_iter("junk:*"):
            client.delete(key)
        for r in accepted:
            did = r.json()["delivery_id"]
            wait_until(lambda did=did: client.hget(f"da:inbox:{did}", "status") == b"done",
                       timeout=60, what=f"delivery {did}")
        retried = [e for e in fake.side_effects() if ":job_retried:" in e]
        assert len(retried) == 5
        gl = GitLabAdapter(fake.url, fake.token)
        for i in range(5):
            assert len([n for n in gl.list_notes(PROJECT, "issue", 1000 + i)
                        if "devops-agent:ci:" in n["body"]]) == 1
        for i in range(5, 10):  # refused hooks were never recorded, so nothing ran for them
            assert gl.list_notes(PROJECT, "issue", 1000 + i) == []
    finally:
        if worker is not None:
            worker.stop(group=True)
        web.stop()
        client.close()
        server.stop()


@pytest.mark.parametrize("maxmemory", ["1gb"])
def test_the_embedded_server_never_evicts(tmp_path, maxmemory):
    server = RedisServer(tmp_path / "r", port=free_port(), maxmemory=maxmemory).start()
    try:
        client = redis_lib.Redis.from_url(server.client_url())
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert int(client.config_get("maxmemory")["maxmemory"]) == 1024 ** 3
        client.close()
    finally:
        server.stop()
