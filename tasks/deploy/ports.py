"""The GitLab calls the deploy feature makes (gates, the GitLab reporter, Deployment records,
post-mortems), on top of the comment helper's port."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from tasks.gitlab.ports import CommentsPort
from tasks.gitlab.session import ProjectRef


class DeployGitLab(CommentsPort, Protocol):
    def access_level(self, project: ProjectRef, user_id: int) -> int: ...
    def commits_between(self, project: ProjectRef, base: str, head: str) -> int: ...
    def create_deployment(
        self,
        project: ProjectRef,
        environment: str,
        sha: str,
        ref: str,
        status: str = "running",
        tag: bool = False,
    ) -> dict: ...
    def create_issue(
        self, project: ProjectRef, title: str, description: str = "", labels: Iterable[str] = ()
    ) -> dict: ...
    def freeze_periods(self, project: ProjectRef) -> list[dict]: ...
    def latest_pipeline(self, project: ProjectRef, ref: str) -> dict | None: ...
    def mr_approvals(self, project: ProjectRef, mr_iid: int) -> dict: ...
    def pipeline_jobs(
        self, project: ProjectRef, pipeline_id: int, scope: str | Iterable[str] | None = None
    ) -> list[dict]: ...
    def relabel(
        self, project: ProjectRef, kind: str, iid: int, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> dict: ...
    def remove_labels(self, project: ProjectRef, kind: str, iid: int, labels: Iterable[str]) -> dict: ...
    def update_deployment(self, project: ProjectRef, deployment_id: int, status: str) -> dict: ...
