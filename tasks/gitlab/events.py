"""Typed GitLab webhook payloads: just the fields we act on, validated with pydantic.

GitLab adds fields release by release, so every model ignores unknown keys; a payload that lacks a
field we need is refused with the field's path, and that delivery is marked invalid, not retried.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.intake.alert_model import AlertGroupEvent


class EventError(ValueError):
    """The payload does not have the shape GitLab documents for its event kind."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class User(_Model):
    id: int | None = None
    username: str | None = None
    name: str | None = None


class Project(_Model):
    id: int
    path_with_namespace: str | None = None
    default_branch: str | None = None
    web_url: str | None = None


class Build(_Model):
    id: int
    name: str = ""
    stage: str = ""
    status: str = ""
    failure_reason: str | None = None
    allow_failure: bool = False


class PipelineAttributes(_Model):
    id: int
    iid: int | None = None
    ref: str | None = None
    sha: str | None = None
    status: str
    source: str | None = None
    tag: bool = False


class PipelineMR(_Model):
    iid: int
    title: str | None = None
    source_branch: str | None = None
    target_branch: str | None = None
    source_project_id: int | None = None


class Commit(_Model):
    id: Any = None
    message: str | None = None


class _ProjectEvent(_Model):
    project: Project

    @property
    def project_id(self) -> int:
        return self.project.id


class PipelineEvent(_ProjectEvent):
    kind: Literal["pipeline"] = "pipeline"
    object_attributes: PipelineAttributes
    user: User | None = None
    merge_request: PipelineMR | None = None
    builds: list[Build] = Field(default_factory=list)
    commit: Commit | None = None


class JobEvent(_Model):
    kind: Literal["job"] = "job"
    build_id: int
    build_name: str = ""
    build_stage: str = ""
    build_status: str
    build_failure_reason: str | None = None
    build_allow_failure: bool = False
    retries_count: int = 0
    pipeline_id: int | None = None
    project_id: int
    ref: str | None = None
    sha: str | None = None
    user: User | None = None
    commit: Commit | None = None
    project: Project | None = None


class Label(_Model):
    id: int | None = None
    title: str


class LabelChange(_Model):
    previous: list[Label] = Field(default_factory=list)
    current: list[Label] = Field(default_factory=list)

    def added(self) -> list[str]:
        before = {label.title for label in self.previous}
        return [label.title for label in self.current if label.title not in before]


class Changes(_Model):
    labels: LabelChange | None = None


class IssueAttributes(_Model):
    id: int | None = None
    iid: int
    title: str | None = None
    description: str | None = None
    action: str | None = None
    state: str | None = None
    updated_at: str | None = None


class MRAttributes(IssueAttributes):
    source_branch: str | None = None
    target_branch: str | None = None
    last_commit: Commit | None = None


class _LabelledEvent(_ProjectEvent):
    """Issue and merge request hooks: who changed what, and the label change if any."""

    user: User | None = None
    labels: list[Label] = Field(default_factory=list)
    changes: Changes = Field(default_factory=Changes)


class IssueEvent(_LabelledEvent):
    kind: Literal["issue"] = "issue"
    object_attributes: IssueAttributes


class MergeRequestEvent(_LabelledEvent):
    kind: Literal["merge_request"] = "merge_request"
    object_attributes: MRAttributes


class NoteAttributes(_Model):
    id: int
    note: str = ""
    noteable_type: str
    action: str | None = None  # "create" or "update" (GitLab 16.x+); absent on older versions
    system: bool = False
    author_id: int | None = None


class NoteIssue(_Model):
    iid: int
    source_branch: str | None = None  # merge requests only


class NoteEvent(_ProjectEvent):
    kind: Literal["note"] = "note"
    object_attributes: NoteAttributes
    user: User
    issue: NoteIssue | None = None
    merge_request: NoteIssue | None = None


class DeploymentEvent(_ProjectEvent):
    kind: Literal["deployment"] = "deployment"
    status: str
    deployment_id: int | None = None
    deployable_id: int | None = None
    environment: str
    ref: str | None = None
    sha: str | None = None
    short_sha: str | None = None
    user: User | None = None


Event = (PipelineEvent | JobEvent | MergeRequestEvent | IssueEvent | NoteEvent | DeploymentEvent
         | AlertGroupEvent)

_MODELS: dict[str, type[BaseModel]] = {
    "pipeline": PipelineEvent,
    "job": JobEvent,
    "merge_request": MergeRequestEvent,
    "issue": IssueEvent,
    "note": NoteEvent,
    "deployment": DeploymentEvent,
    "alert": AlertGroupEvent,  # Alertmanager, through its own endpoint (tasks/incidents)
}


def parse_event(kind: str, payload: Any) -> Event:
    """Validate `payload` as the event `kind`; raise EventError naming the first bad fields."""
    model = _MODELS.get(kind)
    if model is None:
        raise EventError(f"unsupported event kind {kind!r}")
    if not isinstance(payload, dict):
        raise EventError("payload is not a JSON object")
    try:
        return model.model_validate(payload)  # type: ignore[return-value]
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise EventError(f"{kind} payload: {where}") from None
