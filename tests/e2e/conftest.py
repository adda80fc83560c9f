"""What the end-to-end deploy tests share: a fake kube-apiserver (rollouts ready at once, a
0.5 s progress deadline) and a health endpoint, one of each per test module."""

from __future__ import annotations

import pytest

from tests.support.fake_kube import FakeHTTP, FakeKube


@pytest.fixture(scope="module")
def kube():
    fake = FakeKube(ready_after=0.05, observe_delay=0.01, deadline_after=0.5).serve()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def health():
    server = FakeHTTP().serve()
    yield server
    server.stop()
