"""Deploy records, steps, holds (locks), errors and the Reporter protocol.

What is asked of the service is tasks/deploy/requests.py's `DeployRequest`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
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
class Hold:
    """One reason an environment is held. Two kinds exist side by side: a `/devops lock`
    (`manual`: who, since when, why; only `unlock` releases it) and a deploy or rollback in
    progress (`deploy`: who asked, since when, its phase; released when it ends)."""

    kind: Literal["manual", "deploy"]
    by: str
    since: float
    reason: str = ""       # manual: the lock's reason; deploy: its pause or terminal reason
    deploy_id: str = ""
    deploy_kind: str = ""  # deploy | rollback
    phase: str = ""
    status: str = ""       # running | paused (a lock of a finished record is about to go)

    def describe(self) -> str:
        """For a person: `@bob since 2024-05-01 12:00 UTC: db migration`."""
        when = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M UTC") if self.since else "?"
        if self.kind == "manual":
            return f"🔒 @{self.by}: {self.reason} (locked since {when})"
        state = f"paused: {self.reason}" if self.status == "paused" else f"phase `{self.phase}`"
        return f"{self.deploy_kind or 'deploy'} `{self.deploy_id}` by @{self.by} since {when}, {state}"


@dataclass
class DeployRecord:
    """The persisted state machine (Redis `da:deploy:record:<id>`, JSON; tasks/deploy/keys.py)."""

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
    holds: list[Hold] = field(default_factory=list)  # the manual lock and the deploy, if any


class DeployError(Exception):
    """An expected refusal or failure, worth one clear sentence to the user."""


class DeployLocked(DeployError):
    def __init__(self, env: str, holder_id: str, holder: DeployRecord | None) -> None:
        who = f" by {holder.requested_by}" if holder else ""
        what = f" ({holder.kind} of {holder.image or 'revision ' + str(holder.revision)})" if holder else ""
        super().__init__(f"{env} is locked by {holder_id}{what}{who}; wait for it, or promote/roll it back")
        self.env, self.holder_id, self.holder = env, holder_id, holder


class EnvironmentLocked(DeployError):
    """Someone locked the environment by hand (`/devops lock`): nothing starts until `unlock`."""

    def __init__(self, env: str, hold: Hold) -> None:
        super().__init__(f"{env} is locked by @{hold.by}: {hold.reason} (since "
                         f"{datetime.fromtimestamp(hold.since, UTC):%Y-%m-%d %H:%M} UTC). "
                         f"Ask them to `unlock {env}`.")
        self.env, self.hold = env, hold


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
