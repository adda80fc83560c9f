"""Deploy records, steps, requests, errors and the Reporter protocol."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

StepKind = Literal["wait", "paused", "succeeded", "failed", "rolled_back"]
TERMINAL = ("succeeded", "failed", "rolled_back")


@dataclass(frozen=True)
class Step:
    """What `advance` tells its caller: call me again in `seconds`, or stop (and why)."""

    kind: StepKind
    seconds: float = 0.0
    reason: str = ""

    @classmethod
    def wait(cls, seconds: float) -> Step:
        return cls("wait", seconds=max(0.0, float(seconds)))

    @classmethod
    def paused(cls, reason: str) -> Step:
        return cls("paused", reason=reason)

    @classmethod
    def succeeded(cls, reason: str = "") -> Step:
        return cls("succeeded", reason=reason)

    @classmethod
    def failed(cls, reason: str) -> Step:
        return cls("failed", reason=reason)

    @classmethod
    def rolled_back(cls, reason: str) -> Step:
        return cls("rolled_back", reason=reason)

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL


@dataclass(frozen=True)
class DeployRequest:
    project: str
    env: str
    sha: str
    requested_by: str
    ref: str = ""
    image: str | None = None  # overrides the environment's image template
    # Who to tell about it: opaque to the service, stored on the record for the Reporter
    # (ChatOps keeps the command's reply under it).
    handle: str = ""


@dataclass(frozen=True)
class RollbackRequest:
    project: str
    env: str
    requested_by: str
    revision: int | None = None  # None: the revision before the live one
    reason: str = ""
    handle: str = ""
    # Go back even to a revision whose deploy here failed its checks (otherwise refused).
    force: bool = False


@dataclass
class DeployRecord:
    """The persisted state machine (Redis `deploy:<id>`, JSON)."""

    id: str
    kind: Literal["deploy", "rollback"]
    project: str
    env: str
    strategy: str
    requested_by: str
    sha: str = ""
    ref: str = ""
    image: str = ""
    revision: int | None = None          # rollback target (None: previous)
    phase: str = "init"
    status: Literal["running", "paused", "succeeded", "failed", "rolled_back"] = "running"
    reason: str = ""                     # the terminal or pause reason
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)    # strategy scratch space
    timeline: list[tuple[float, str]] = field(default_factory=list)
    api_errors: int = 0
    promote_requested: bool = False
    abort_requested: str = ""            # who/why, when a rollback was asked for mid-deploy
    handle: str = ""                     # the request's handle: whom the Reporter tells
    # Other requests waiting on this record, each told its own verdict when it ends: a
    # rollback that asked this deploy to abort, a promote that let it go on.
    # [{"action": "rollback" | "promote", "by": user, "handle": ..., "reason": ..., "at": t}]
    followers: list[dict[str, Any]] = field(default_factory=list)

    def log(self, text: str, at: float | None = None) -> None:
        self.timeline.append((at if at is not None else time.time(), text))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeployRecord:
        data = json.loads(raw)
        data["timeline"] = [tuple(x) for x in data.get("timeline", [])]
        return cls(**data)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def step(self) -> Step:
        """The Step matching a stored terminal or paused status."""
        if self.status == "paused":
            return Step.paused(self.reason)
        if self.status == "succeeded":
            return Step.succeeded(self.reason)
        if self.status == "failed":
            return Step.failed(self.reason)
        if self.status == "rolled_back":
            return Step.rolled_back(self.reason)
        return Step.wait(0)


@dataclass
class EnvStatus:
    project: str
    env: str
    locked_by: str | None
    active: DeployRecord | None
    last: DeployRecord | None
    live: dict[str, Any]   # what runs now: image, revision, ready/desired replicas (+ colour/canary)


class DeployError(Exception):
    """An expected refusal or failure, worth one clear sentence to the user."""


class DeployLocked(DeployError):
    def __init__(self, env: str, holder_id: str, holder: DeployRecord | None) -> None:
        who = f" by {holder.requested_by}" if holder else ""
        what = f" ({holder.kind} of {holder.image or 'revision ' + str(holder.revision)})" if holder else ""
        super().__init__(f"{env} is locked by {holder_id}{what}{who}; wait for it, or promote/roll it back")
        self.env, self.holder_id, self.holder = env, holder_id, holder


class DeployNotFound(DeployError):
    pass


class Reporter(Protocol):
    """Where deploy news goes (GitLab comments in production, a list in tests).

    `verdict` is called when the record ends (succeeded, failed, rolled_back) and when it
    pauses for a human; the record says who asked for it (`handle`) and who else waits on it
    (`followers`), so each of them can be told its own verdict (tasks/deploy/verdicts.py)."""

    def progress(self, deploy: DeployRecord, text: str) -> None: ...

    def verdict(self, deploy: DeployRecord, text: str) -> None: ...

    def postmortem(self, deploy: DeployRecord, title: str, body: str) -> None: ...


class NullReporter:
    def progress(self, deploy: DeployRecord, text: str) -> None:
        pass

    def verdict(self, deploy: DeployRecord, text: str) -> None:
        pass

    def postmortem(self, deploy: DeployRecord, title: str, body: str) -> None:
        pass
