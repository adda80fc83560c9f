"""Deploy test fixtures: the fake API server (spoken to by the real kubernetes client), a fake
health/Prometheus server, a real Redis, and environments with sub-second time constants."""

from __future__ import annotations

import time

import pytest

from tasks.config.environments import EnvironmentConfig, parse_environments
from tasks.deploy.kube import Kube
from tasks.deploy.model import Step
from tasks.deploy.service import DeployService
from tests.support.fake_kube import FakeHTTP, FakeKube
from tests.support.recording_reporter import RecordingReporter

NS = "shop"
FAST = {"poll_interval": 0.03, "rollout_timeout": 3.0, "api_error_retries": 3}


@pytest.fixture
def fake():
    kube = FakeKube(ready_after=0.05, observe_delay=0.01, deadline_after=0.3).serve()
    yield kube
    kube.stop()


@pytest.fixture
def web():
    server = FakeHTTP().serve()
    for path in ("/healthz", "/blue/healthz", "/green/healthz", "/canary/healthz", "/stable/healthz"):
        server.set_status(path, 200)
    yield server
    server.stop()


@pytest.fixture
def reporter():
    return RecordingReporter()


def env_config(fake: FakeKube, web: FakeHTTP, name: str = "staging", **overrides) -> EnvironmentConfig:
    raw = {
        "credentials": {"mode": "host", "host": fake.url, "verify_ssl": False, "request_timeout": 2},
        "namespace": NS, "deployment": "web", "container": "app",
        "image": "registry.example.com/shop/web:{sha}",
        "health_checks": [{"url": web.url + "/healthz", "successes": 2, "failures": 2, "timeout": 1}],
        "verification": {"interval": 0.03, "timeout": 2.0},
        "timings": FAST,
    }
    raw.update(overrides)
    return parse_environments({"environments": {name: raw}}, "test")[name]


@pytest.fixture
def make_service(redis_client, reporter):
    made: list[DeployService] = []

    def make(*configs: EnvironmentConfig, lock_ttl: float = 30.0) -> DeployService:
        # a fresh service (and fresh Kube clients) is what a new worker process would build
        service = DeployService(redis_client, {c.name: c for c in configs}, reporter,
                                kube_factory=lambda cfg: Kube.from_host(cfg.credentials.host or "",
                                                                        verify_ssl=False, request_timeout=2),
                                lock_ttl=lock_ttl)
        made.append(service)
        return service

    yield make
    for service in made:
        for kube in service._kubes.values():
            kube.close()


def drive(service: DeployService, deploy_id: str, *, until: float = 15.0, stop_paused: bool = True,
          steps: list[Step] | None = None) -> Step:
    """What the Celery task does: advance, then 'countdown' (here: sleep) — until terminal."""
    deadline = time.monotonic() + until
    while True:
        step = service.advance(deploy_id)
        if steps is not None:
            steps.append(step)
        if step.terminal or (step.kind == "paused" and stop_paused):
            return step
        if time.monotonic() > deadline:
            raise AssertionError(f"deploy {deploy_id} did not finish; last step {step}, "
                                 f"phase {service.get(deploy_id).phase}")
        time.sleep(min(step.seconds, 0.1))
