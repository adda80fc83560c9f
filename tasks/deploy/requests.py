"""The narrow interface ChatOps uses to deploy, roll back and promote.

`KubeDeployer` (tasks/deploy/driver.py) drives the Kubernetes deploy service; an
environment without a Kubernetes target is refused, never simulated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


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
    # queued | running while the request is carried out; refused when nothing was started
    # (the verdicts a request can end in are in tasks/deploy/verdicts.py)
    status: str
    detail: str
    deploy_id: str | None = None


class Deployer(Protocol):
    def submit(self, request: DeployRequest) -> Ticket: ...

    def active(self, deploy_id: str) -> bool: ...

    def status(self, project: int, env: str) -> dict[str, Any]: ...
