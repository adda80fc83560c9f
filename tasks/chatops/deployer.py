"""The narrow interface ChatOps uses to deploy, roll back and promote, and a stand-in.

`KubeDeployer` (tasks/chatops/kube_deployer.py) drives the Kubernetes deploy service; until an
environment is configured for Kubernetes, `RecordingDeployer` answers, records what it was asked
and says plainly that nothing was deployed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson


@dataclass(frozen=True)
class DeployRequest:
    project: int
    env: str
    action: str  # deploy | rollback | promote
    ref: str | None = None
    sha: str | None = None
    revision: str | None = None  # rollback target; None: the previous one
    requested_by: str | None = None
    reason: str | None = None  # the --force reason, when given
    # where progress is reported: ("issue" | "mr", iid, comment subject), and label to flip
    reply_to: tuple[str, int, str] | None = None
    trigger_label: str | None = None
    command_line: str | None = None  # quoted again when the deploy's progress edits the reply
    # unique per command or label event: submitting the same request twice deploys once
    request_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ticket:
    status: str  # queued | running | succeeded | failed | refused
    detail: str
    deploy_id: str | None = None


class Deployer(Protocol):
    def submit(self, request: DeployRequest) -> Ticket: ...

    def status(self, project: int, env: str) -> dict[str, Any]: ...


class RecordingDeployer:
    """Records requests in Redis (so tests in another process can read them) and reports that
    no Kubernetes target is configured; the same request_id is recorded once."""

    KEY = "da:recorded-deploys"

    def __init__(self, redis: Any, outcome: str = "succeeded") -> None:
        self.redis = redis
        self.outcome = outcome

    def submit(self, request: DeployRequest) -> Ticket:
        if self.redis.set(f"da:deploy-request:{request.request_id}", 1, nx=True, ex=30 * 86400):
            self.redis.rpush(self.KEY, orjson.dumps(request.as_dict()))
        return Ticket(self.outcome, f"{request.action} of {request.env} recorded "
                                    "(no Kubernetes target is configured for it)")

    def status(self, project: int, env: str) -> dict[str, Any]:
        done = [r for r in self.requests() if r["project"] == project and r["env"] == env]
        return {"env": env, "last": done[-1] if done else None}

    def requests(self) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for raw in self.redis.lrange(self.KEY, 0, -1)]
