"""The pipeline a CI event is about, as GitLab's API confirms it (PipelineRef), and its failed
jobs (FailedJob): what triage, the failure comment and the learning from corrections act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.ci.linking import mr_iid_from_ref
from tasks.gitlab.client import NotFound


@dataclass(frozen=True)
class FailedJob:
    id: int
    name: str
    stage: str = ""
    failure_reason: str | None = None


@dataclass(frozen=True)
class PipelineRef:
    project: int
    pipeline: int
    ref: str
    sha: str
    mr_iid: int | None = None
    commit_message: str | None = None
    project_path: str | None = None
    default_branch: str | None = None


def pipeline_ref(event: Any) -> PipelineRef:
    """The PipelineRef a Pipeline Hook claims (tests; the handlers use verified_pipeline)."""
    attrs = event.object_attributes
    return PipelineRef(project=event.project.id, pipeline=attrs.id, ref=attrs.ref or "",
                       sha=attrs.sha or "",
                       mr_iid=event.merge_request.iid if event.merge_request else None,
                       commit_message=event.commit.message if event.commit else None,
                       project_path=event.project.path_with_namespace,
                       default_branch=event.project.default_branch)


def verified_pipeline(ctx: Any, project: int, pipeline: int,
                      mr_hint: int | None = None) -> tuple[PipelineRef, dict[str, Any]]:
    """The pipeline as GitLab's API has it: (PipelineRef, the API's pipeline). Ref, SHA and status come
    from the pipeline, the commit message from the commit, the default branch from the
    project; the body's merge request is kept only when GitLab confirms it is this ref's."""

    raw = ctx.gitlab.get_pipeline(project, pipeline)
    ref, sha = str(raw.get("ref") or ""), str(raw.get("sha") or "")
    mr_iid = mr_iid_from_ref(ref)
    if mr_iid is None and mr_hint is not None:
        try:
            if ctx.gitlab.get_mr(project, mr_hint).get("source_branch") == ref:
                mr_iid = mr_hint
        except NotFound:
            pass
    message = None
    if sha:
        try:
            message = ctx.gitlab.get_commit(project, sha).get("message")
        except NotFound:
            pass
    facts = ctx.project
    return PipelineRef(project=project, pipeline=pipeline, ref=ref, sha=sha, mr_iid=mr_iid,
                       commit_message=message, project_path=facts.path if facts else None,
                       default_branch=facts.default_branch if facts else None), raw
