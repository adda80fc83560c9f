"""Shared fixtures: a real redis-server per test session (flushed per test)."""

from __future__ import annotations

import pytest
import redis as redis_lib

from tasks.redis_server import RedisServer

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
    from tasks.docs import corpus_report as score

    return score()
