"""Two workers submitting the same command at once start one deploy (real service, real kube
client against the fake API server, real Redis)."""

from __future__ import annotations

import threading

from tasks.config.agent import AgentConfig
from tasks.deploy.driver import KubeDeployer
from tasks.deploy.requests import DeployRequest
from tasks.engine.schedule import Schedule

from .conftest import NS, env_config


def test_one_request_id_starts_one_deploy(redis_client, fake, web):
    fake.add_deployment(NS, "web", "registry.example.com/shop/web:" + "a" * 40)
    config = AgentConfig(environments={"staging": env_config(fake, web)})
    request = DeployRequest(project=15, env="staging", action="deploy", sha="b" * 40, ref="main",
                            requested_by="alice", request_id="15:issue:42:cmd:1:0")
    results = []
    barrier = threading.Barrier(2)

    def submit():
        # One per worker process; no GitLab: these requests have no reply thread.
        deployer = KubeDeployer(redis=redis_client, schedule=Schedule(redis_client, queue="races"),
                                config=config)
        barrier.wait()
        results.append(deployer.submit(request))

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(t.detail for t in results)[0] == "already submitted"
    assert [t.status for t in results] == ["queued", "queued"]
    assert len(list(redis_client.scan_iter("da:deploy:record:*"))) == 1
