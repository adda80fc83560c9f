"""Ready-made pytest fixtures. Use them from a test module or conftest with

    from tests.support.fake_gitlab.fixtures import fake_gitlab, fake_gitlab_server  # noqa: F401

`fake_gitlab` is the thread-mode fake, wiped before each test; `fake_gitlab_process` is one
subprocess per test session (for tests whose other processes, e.g. Celery workers, must reach it),
also wiped before each test through `fake_gitlab_proc`.
"""

from __future__ import annotations

import pytest

from .server import FakeGitLabProcess, FakeGitLabServer


@pytest.fixture(scope="session")
def fake_gitlab_server():
    with FakeGitLabServer() as fake:
        yield fake


@pytest.fixture
def fake_gitlab(fake_gitlab_server):
    fake_gitlab_server.reset()
    return fake_gitlab_server


@pytest.fixture(scope="session")
def fake_gitlab_process():
    with FakeGitLabProcess() as proc:
        yield proc


@pytest.fixture
def fake_gitlab_proc(fake_gitlab_process):
    fake_gitlab_process.reset()
    return fake_gitlab_process
