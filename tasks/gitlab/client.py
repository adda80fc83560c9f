"""The GitLab adapter: the only code in the service that talks to GitLab.

A narrow layer over python-gitlab that takes and returns plain data (dicts, small tuples), so
handlers can be tested against `tests/support/recording_gitlab.RecordingGitLab` instead.

The calls are here (projects, pipelines and jobs, the repository, deployments) and in
discussions.py (issues, merge requests, notes); the plumbing they share (bounded retries,
Retry-After, dry-run writes) is session.py, and the errors they raise errors.py.

Build one adapter per process (after Celery forks): it owns a requests session.

Errors are typed (`NotFound`, `Forbidden`, `RateLimited`, `GitLabUnavailable`, all
`GitLabError`) and their messages never contain the token.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import gitlab

from tasks.gitlab.discussions import Discussions
from tasks.gitlab.errors import (
    FileTooLarge,
    Forbidden,
    GitLabError,
    GitLabUnavailable,
    NotFound,
    RateLimited,
)
from tasks.gitlab.repository import Repository
from tasks.gitlab.session import KINDS, ProjectRef

# The errors are raised by every call and imported from here by the callers.
__all__ = ["KINDS", "FileTooLarge", "Forbidden", "GitLabAdapter", "GitLabError", "GitLabUnavailable",
           "JobLog", "NotFound", "ProjectRef", "RateLimited"]


class JobLog(NamedTuple):
    """The tail of a job log: at most the adapter's `max_log_bytes`. `truncated_bytes` is how
    many bytes of the head were dropped (0: this is the whole log)."""

    data: bytes
    truncated_bytes: int

    @property
    def truncated(self) -> bool:
        return self.truncated_bytes > 0


# -- the adapter -----------------------------------------------------------------------------
class GitLabAdapter(Discussions, Repository):
    """GitLab REST v4 through python-gitlab, with timeouts, bounded retries and typed errors.

    `project` arguments take an int id or a full path ("group/proj"). In `dry_run` mode reads
    happen but writes are only logged (logger "devops_agent.gitlab", `extra={"dry_run": True,
    "action": ...}`) and answered with a dict carrying `"dry_run": True`.
    """

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> GitLabAdapter:
        """Build from `tasks.config.settings.Settings` (GITLAB_URL, GITLAB_TOKEN, DRY_RUN). Optional
        settings named `gitlab_timeout`, `gitlab_max_log_bytes`, `gitlab_max_retries` are used
        when present."""
        if not settings.gitlab_url or settings.gitlab_token is None:
            raise GitLabError("GITLAB_URL and GITLAB_TOKEN must be set to talk to GitLab")
        kwargs: dict[str, Any] = {"dry_run": bool(settings.dry_run)}
        for name in ("timeout", "max_log_bytes", "max_retries"):
            value = getattr(settings, f"gitlab_{name}", None)
            if value is not None:
                kwargs[name] = value
        kwargs.update(overrides)
        return cls(settings.gitlab_url, settings.gitlab_token.value, **kwargs)

    # -- projects, users ---------------------------------------------------------------------
    def current_user(self) -> dict:
        return self._call("current_user", lambda: _json(self._gl.http_get("/user")))

    def get_project(self, project: ProjectRef) -> dict:
        return self._call("get_project", lambda: self._plain(self._gl.projects.get(project)))

    def access_level(self, project: ProjectRef, user_id: int) -> int:
        """The user's effective (inherited included) access level; 0 when not a member."""
        try:
            member = self._call("access_level",
                                lambda: self._project(project).members_all.get(user_id))
        except NotFound:
            return 0
        return int(member.access_level)

    def freeze_periods(self, project: ProjectRef) -> list[dict]:
        path = f"/projects/{_encode(project)}/freeze_periods"
        return self._call("freeze_periods", lambda: list(
            self._gl.http_list(path, get_all=True, per_page=self.per_page)))

    def group_projects(self, group: str, limit: int = 200) -> list[dict]:
        """A group's projects, its subgroups' included, at most `limit`."""
        return self._first(limit, "group_projects",
                           self._gl.groups.get(group, lazy=True).projects.list,
                           include_subgroups=True, archived=False, order_by="id", sort="asc")

    # -- pipelines and jobs --------------------------------------------------------------------
    def get_pipeline(self, project: ProjectRef, pipeline_id: int) -> dict:
        return self._call("get_pipeline",
                          lambda: self._plain(self._project(project).pipelines.get(pipeline_id)))

    def latest_pipeline(self, project: ProjectRef, ref: str) -> dict | None:
        """The newest pipeline for `ref`, or None when the ref has none."""
        path = f"/projects/{_encode(project)}/pipelines/latest"
        try:
            return self._call("latest_pipeline",
                              lambda: _json(self._gl.http_get(path, query_data={"ref": ref})))
        except NotFound:
            return None

    def pipeline_jobs(self, project: ProjectRef, pipeline_id: int,
                      scope: str | Iterable[str] | None = None) -> list[dict]:
        """Jobs of a pipeline (latest attempt of each); `scope` filters by status."""
        if isinstance(scope, str):
            scope = [scope]
        pipe = self._project(project).pipelines.get(pipeline_id, lazy=True)
        return self._list("pipeline_jobs", pipe.jobs.list,
                          scope=list(scope) if scope is not None else None)

    def recent_jobs(self, project: ProjectRef, scopes: Iterable[str],
                    limit: int = 1000) -> Iterator[dict]:
        """The project's jobs in `scopes` (e.g. failed, success), newest first, at most `limit`;
        pages are fetched as the caller reads, so stopping early costs no more requests."""
        jobs = self._call("recent_jobs", lambda: self._project(project).jobs.list(
            scope=list(scopes), iterator=True, per_page=self.per_page))
        it = iter(jobs)
        for _ in range(limit):
            try:
                job = self._call("recent_jobs", lambda: next(it))
            except StopIteration:
                return
            yield self._plain(job)

    def failed_pipelines(self, project: ProjectRef, updated_after: str,
                         limit: int = 100) -> list[dict]:
        """Pipelines that failed and changed after `updated_after` (ISO 8601), newest first, at
        most `limit` (one page when it fits)."""
        return self._first(limit, "failed_pipelines", self._project(project).pipelines.list,
                           status="failed", updated_after=updated_after, order_by="updated_at",
                           sort="desc")

    def get_job(self, project: ProjectRef, job_id: int) -> dict:
        return self._call("get_job", lambda: self._plain(self._project(project).jobs.get(job_id)))

    def retry_job(self, project: ProjectRef, job_id: int) -> dict:
        """Retry a job; GitLab answers with the NEW job (new id, status pending)."""
        job = self._project(project).jobs.get(job_id, lazy=True)
        return self._write("retry_job", project, {"job_id": job_id}, lambda: job.retry())

    def job_log(self, project: ProjectRef, job_id: int) -> JobLog:
        """The tail of a job's log, read streamed: memory stays within `max_log_bytes` plus one
        chunk however large the log is. When the head is dropped, the partial first line goes
        too, so the text starts on a line boundary."""
        cap = self.max_log_bytes
        job = self._project(project).jobs.get(job_id, lazy=True)

        def read() -> JobLog:
            chunks: Iterator[bytes] = job.trace(streamed=True, iterator=True,
                                                chunk_size=self.log_chunk_bytes)
            buf = bytearray()
            dropped = 0
            deadline = time.monotonic() + self.max_log_seconds
            try:
                for chunk in chunks:
                    buf += chunk
                    if len(buf) > cap:
                        extra = len(buf) - cap
                        del buf[:extra]
                        dropped += extra
                    if time.monotonic() > deadline:
                        raise GitLabUnavailable(f"job_log: job {job_id} log still streaming "
                                                f"after {self.max_log_seconds:g}s")
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()
            if dropped:
                nl = buf.find(b"\n", 0, 64 * 1024)
                if 0 <= nl < len(buf) - 1:
                    del buf[:nl + 1]
                    dropped += nl + 1
            return JobLog(bytes(buf), dropped)

        return self._call("job_log", read)

    def test_report(self, project: ProjectRef, pipeline_id: int) -> dict:
        pipe = self._project(project).pipelines.get(pipeline_id, lazy=True)
        return self._call("test_report", lambda: self._plain(pipe.test_report.get()))

    # -- repository ------------------------------------------------------------------------------
    def commits_between(self, project: ProjectRef, base: str, head: str) -> int:
        """How many commits `head` has that `base` has not (GitLab's compare)."""
        return self._call("commits_between", lambda: len(self._project(project).repository_compare(
            base, head).get("commits") or []))

    def get_commit(self, project: ProjectRef, sha: str) -> dict:
        return self._call("get_commit", lambda: self._plain(self._project(project).commits.get(sha)))

    def get_file(self, project: ProjectRef, path: str, ref: str) -> dict:
        """A file at `ref`: the API's fields (blob_id, commit_id, last_commit_id, ...) with
        `content` decoded to text."""
        files = self._project(project).files

        def read() -> dict:
            data = self._plain(files.get(file_path=path, ref=ref))
            data["content"] = base64.b64decode(data.get("content") or "").decode("utf-8",
                                                                               "replace")
            data["encoding"] = "text"
            return data

        return self._call("get_file", read)

    def ci_lint(self, project: ProjectRef, content: str, ref: str | None = None,
                dry_run: bool = False) -> dict:
        """GitLab's CI lint of `content` in the project's context (`valid`, `errors`,
        `warnings`, `merged_yaml`); with `dry_run`, includes are read at `ref`. A read: it
        changes nothing, so it is sent in dry-run mode too."""
        data: dict[str, Any] = {"content": content}
        if dry_run:
            data["dry_run"] = True
            if ref:
                data["ref"] = ref
        lint = self._project(project).ci_lint
        return self._call("ci_lint", lambda: self._plain(lint.create(data)))

    def create_commit(self, project: ProjectRef, branch: str, message: str,
                      actions: list[dict], start_branch: str | None = None) -> dict:
        """One commit of `actions` ({action, file_path, content, ...}); with `start_branch`
        the branch is created from it when missing."""
        fields: dict[str, Any] = {"branch": branch, "commit_message": message,
                                  "actions": actions}
        if start_branch:
            fields["start_branch"] = start_branch
        commits = self._project(project).commits
        return self._write("create_commit", project, fields,
                           lambda: self._plain(commits.create(fields)))

    # -- deployments -------------------------------------------------------------------------
    def create_deployment(self, project: ProjectRef, environment: str, sha: str, ref: str,
                          status: str = "running", tag: bool = False) -> dict:
        fields = {"environment": environment, "sha": sha, "ref": ref, "tag": tag,
                  "status": status}
        deployments = self._project(project).deployments
        return self._write("create_deployment", project, fields,
                           lambda: self._plain(deployments.create(fields)))

    def update_deployment(self, project: ProjectRef, deployment_id: int, status: str) -> dict:
        deployments = self._project(project).deployments
        return self._write("update_deployment", project,
                           {"deployment_id": deployment_id, "status": status},
                           lambda: deployments.update(deployment_id, {"status": status}))


def _json(answer: Any) -> dict:
    """python-gitlab's http_get returns the decoded JSON for JSON answers (a Response only for
    raw or streamed ones, which these calls never ask for)."""
    if not isinstance(answer, dict):
        raise GitLabError(f"expected a JSON object from GitLab, got {type(answer).__name__}")
    return answer


def _encode(project: ProjectRef) -> str:
    return str(gitlab.utils.EncodedId(project))
