"""Shared fixtures (a real redis-server per test session, flushed per test) and the test tiers.

Every test is in one tier, by what it needs (`./dev test -m unit` runs in seconds):
* `e2e`: processes (gunicorn, Celery workers, the fake GitLab as a process): tests/e2e and any
  test using a process fixture;
* `integration`: real servers in this process (Redis, the fake GitLab or Kubernetes over HTTP,
  a socket to gunicorn);
* `unit`: none of that, and no socket at all: a unit test that connects anywhere fails and says so.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis as redis_lib

from tasks.platform.redis_server import RedisServer

# The fake GitLab's fixtures (thread mode: fake_gitlab; subprocess mode: fake_gitlab_proc).
from tests.support.fake_gitlab.fixtures import (  # noqa: F401
    fake_gitlab,
    fake_gitlab_proc,
    fake_gitlab_process,
    fake_gitlab_server,
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    client = redis_lib.Redis.from_url(redis_server.client_url())
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def corpus_report():
    """The whole corpus scored once per session (the accuracy test and the README table)."""
    from tasks.cli.docs import corpus_report as score

    return score()


E2E_FIXTURES = {"fake_gitlab_proc", "fake_gitlab_process", "stack"}
INTEGRATION_FIXTURES = {"redis_server", "redis_client", "fake_gitlab", "fake_gitlab_server",
                        "fake", "kube", "web", "make_service", "tls_kube"}
# Folders whose tests talk to servers however they get them (a socket to gunicorn, a fake
# kube-apiserver started inline).
INTEGRATION_DIRS = {"receiver", "fuzz"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(m.name in ("unit", "integration", "e2e") for m in item.iter_markers()):
            continue
        parts = Path(str(item.fspath)).parts
        names = set(getattr(item, "fixturenames", ()))
        if "e2e" in parts or names & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)
        elif names & INTEGRATION_FIXTURES or INTEGRATION_DIRS & set(parts):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tests_open_no_sockets(request, monkeypatch):
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(self, address, *args):
        raise AssertionError(f"a unit test opened a socket to {address!r}: mark it integration")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
