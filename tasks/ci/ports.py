"""The GitLab calls the CI feature makes (triage, the failure comment, fix issues, learning,
pipeline fixes, the rules CLI's backtest), on top of the shared helpers' ports."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from tasks.gitlab.client import JobLog
from tasks.gitlab.ports import CommentsPort, FactsPort
from tasks.gitlab.session import ProjectRef


class CIGitLab(CommentsPort, FactsPort, Protocol):
    def access_level(self, project: ProjectRef, user_id: int) -> int: ...
    def ci_lint(
        self, project: ProjectRef, content: str, ref: str | None = None, dry_run: bool = False
    ) -> dict: ...
    def close(self) -> None: ...
    def create_commit(
        self,
        project: ProjectRef,
        branch: str,
        message: str,
        actions: list[dict],
        start_branch: str | None = None,
    ) -> dict: ...
    def create_issue(
        self, project: ProjectRef, title: str, description: str = "", labels: Iterable[str] = ()
    ) -> dict: ...
    def create_mr(
        self,
        project: ProjectRef,
        source_branch: str,
        target_branch: str,
        title: str,
        description: str = "",
        labels: Iterable[str] = (),
        remove_source_branch: bool = True,
    ) -> dict: ...
    def current_user(self) -> dict: ...
    def find_issues(
        self,
        project: ProjectRef,
        labels: Iterable[str] | None = None,
        search: str | None = None,
        state: str | None = "opened",
    ) -> list[dict]: ...
    def find_mrs(
        self,
        project: ProjectRef,
        source_branch: str | None = None,
        labels: Iterable[str] | None = None,
        search: str | None = None,
        state: str | None = "opened",
    ) -> list[dict]: ...
    def get_commit(self, project: ProjectRef, sha: str) -> dict: ...
    def get_file(self, project: ProjectRef, path: str, ref: str) -> dict: ...
    def get_job(self, project: ProjectRef, job_id: int) -> dict: ...
    def get_pipeline(self, project: ProjectRef, pipeline_id: int) -> dict: ...
    def job_log(self, project: ProjectRef, job_id: int) -> JobLog: ...
    def mr_closes_issues(self, project: ProjectRef, mr_iid: int) -> list[dict]: ...
    def pipeline_jobs(
        self, project: ProjectRef, pipeline_id: int, scope: str | Iterable[str] | None = None
    ) -> list[dict]: ...
    def recent_jobs(
        self, project: ProjectRef, scopes: Iterable[str], limit: int = 1000
    ) -> Iterator[dict]: ...
    def relabel(
        self, project: ProjectRef, kind: str, iid: int, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> dict: ...
    def retry_job(self, project: ProjectRef, job_id: int) -> dict: ...
    def test_report(self, project: ProjectRef, pipeline_id: int) -> dict: ...
    def update_issue(self, project: ProjectRef, iid: int, **fields: Any) -> dict: ...
    def update_mr(self, project: ProjectRef, mr_iid: int, **fields: Any) -> dict: ...
