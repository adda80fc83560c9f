"""What is asked of the deploy service: one request type, from ChatOps to the state machine.

A command, a label or a passed pipeline builds a `DeployRequest` (tasks/chatops/core.py,
tasks/ci/pipeline_passed.py) and hands it to a `Deployer`; `KubeDeployer` (tasks/deploy/driver.py)
gives it a handle and passes the same request on to `DeployService.start` or `.rollback`
(tasks/deploy/service.py). An environment without a Kubernetes target is refused, never
simulated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class DeployRequest:
    # ChatOps passes GitLab's project id (an int); the service keys its state by its text
    project: int | str
    env: str
    action: str = "deploy"  # deploy | rollback | promote
    ref: str | None = None
    sha: str | None = None
    # a rollback's target; None: the previous one. Text as typed in a command is checked by the
    # service (a refusal, not a crash), so both int and str are accepted here.
    revision: int | str | None = None
    requested_by: str | None = None  # a username, optionally followed by " (how)"
    reason: str | None = None  # the --force reason, or why a rollback was asked for
    # --force: past a manual lock held by someone else, and (rollback) back to a revision whose
    # deploy here failed its checks
    force: bool = False
    image: str | None = None  # overrides the environment's image template
    # Who to tell about it: opaque to the service, stored on the record for the Reporter (the
    # driver keeps the command's reply under it; empty until the driver sets it).
    handle: str = ""
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
