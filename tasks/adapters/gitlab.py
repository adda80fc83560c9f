"""The GitLab adapter: the only code in the service that talks to GitLab.

A narrow layer over python-gitlab that takes and returns plain data (dicts, small tuples), so
handlers can be tested against `tests/support/recording_gitlab.RecordingGitLab` instead.

Retries: python-gitlab already retries 429 (honouring Retry-After) and, with
`retry_transient_errors=True`, 5xx and connection errors. We keep that single layer and bound
it: at most `max_retries` retries per HTTP request (python-gitlab's default is 10 and it will
sleep for whatever Retry-After says). POSTs retry 429 only: a POST that got a 5xx or timed out
may have been applied, and sending it again could double a comment or a job retry. A
Retry-After longer than `max_retry_wait` is not slept through in a worker: the call fails at
once with `RateLimited(retry_after=...)`, and the engine runs the work again no sooner than
that (tasks/errors.py) instead of stacking another layer.

Build one adapter per process (after Celery forks): it owns a requests session.

Errors are typed (`NotFound`, `Forbidden`, `RateLimited`, `GitLabUnavailable`, all
`GitLabError`) and their messages never contain the token.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import gitlab
import gitlab.exceptions as gl_exc
import requests

log = logging.getLogger("devops_agent.gitlab")

T = TypeVar("T")
ProjectRef = int | str
KINDS = ("issue", "mr")


# -- errors ----------------------------------------------------------------------------------
class GitLabError(Exception):
    """Any failed GitLab call. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(GitLabError):
    """404: the project, object or membership does not exist (or is invisible to the bot)."""


class Forbidden(GitLabError):
    """401/403: bad token or not allowed (also: a job that is not retryable)."""


class RateLimited(GitLabError):
    """429 after the bounded retries, or a Retry-After too long to wait in a worker."""

    def __init__(self, message: str, status: int | None = 429,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class GitLabUnavailable(GitLabError):
    """5xx, timeouts or network errors that persisted through the bounded retries."""


class FileTooLarge(GitLabError):
    """A repository file is larger than the caller's bound; only the bound was read."""


class JobLog(NamedTuple):
    """The tail of a job log: at most the adapter's `max_log_bytes`. `truncated_bytes` is how
    many bytes of the head were dropped (0: this is the whole log)."""

    data: bytes
    truncated_bytes: int

    @property
    def truncated(self) -> bool:
        return self.truncated_bytes > 0


# -- the adapter -----------------------------------------------------------------------------
class GitLabAdapter:
    """GitLab REST v4 through python-gitlab, with timeouts, bounded retries and typed errors.

    `project` arguments take an int id or a full path ("group/proj"). In `dry_run` mode reads
    happen but writes are only logged (logger "devops_agent.gitlab", `extra={"dry_run": True,
    "action": ...}`) and answered with a dict carrying `"dry_run": True`.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 10,
                 max_log_bytes: int = 8 * 1024 * 1024, dry_run: bool = False,
                 per_page: int = 100, max_retries: int = 3,
                 max_retry_wait: float = 30.0, log_chunk_bytes: int = 64 * 1024,
                 max_log_seconds: float = 120.0) -> None:
        if max_log_bytes <= 0:
            raise ValueError("max_log_bytes must be positive")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_log_bytes = max_log_bytes
        self.dry_run = dry_run
        self.per_page = per_page
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.log_chunk_bytes = log_chunk_bytes
        self.max_log_seconds = max_log_seconds
        self._secret = token
        self._local = threading.local()  # last Retry-After seen, per calling thread
        self._projects: dict[Any, Any] = {}  # lazy Project objects: ~100 managers to build
        session = requests.Session()
        session.hooks["response"].append(self._check_retry_after)
        self._gl = _BoundedGitlab(self.url, private_token=token, timeout=timeout,
                                  retry_transient_errors=True, session=session,
                                  max_retries=max_retries, per_page=per_page)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> GitLabAdapter:
        """Build from `tasks.settings.Settings` (GITLAB_URL, GITLAB_TOKEN, DRY_RUN). Optional
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

    def __repr__(self) -> str:
        return f"GitLabAdapter(url={self.url!r}, dry_run={self.dry_run})"

    def close(self) -> None:
        self._gl.session.close()

    # -- plumbing ----------------------------------------------------------------------------
    def _check_retry_after(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """requests response hook, before python-gitlab's retry loop sees the response:
        normalise Retry-After to whole seconds (python-gitlab int()s it and would crash on an
        HTTP date or a fraction) and refuse to sleep longer than `max_retry_wait`."""
        if response.status_code != 429:
            return
        headers = response.headers
        wait = _parse_retry_after(headers["Retry-After"]) if "Retry-After" in headers else None
        if wait is None and "RateLimit-Reset" in headers:  # python-gitlab's fallback: epoch
            try:
                wait = max(0.0, float(headers["RateLimit-Reset"]) - time.time())
            except ValueError:
                wait = None
        headers.pop("Retry-After", None)
        headers.pop("RateLimit-Reset", None)
        self._local.retry_after = wait
        if wait is None:
            return  # python-gitlab backs off exponentially (0.1 s, 0.2 s, ...)
        if wait > self.max_retry_wait:
            response.close()
            raise RateLimited(f"GitLab rate limit: retry after {wait:g}s "
                              f"({response.request.method} {_path(response.url)})",
                              retry_after=wait)
        headers["Retry-After"] = str(math.ceil(wait))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one python-gitlab operation, translating its errors into ours."""
        try:
            return fn()
        except GitLabError:
            raise
        except gl_exc.GitlabError as e:
            raise self._translate(what, e) from None
        except (requests.Timeout, requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError) as e:
            raise GitLabUnavailable(self._scrub(f"{what}: {type(e).__name__}: {e}")) from None

    def _translate(self, what: str, e: gl_exc.GitlabError) -> GitLabError:
        status = e.response_code
        msg = self._scrub(f"{what}: HTTP {status}: {e.error_message}")
        if status == 404:
            return NotFound(msg, status)
        if status in (401, 403):
            return Forbidden(msg, status)
        if status == 429:
            return RateLimited(msg, status, retry_after=getattr(self._local, "retry_after", None))
        if status is None or status >= 500:
            return GitLabUnavailable(msg, status)
        return GitLabError(msg, status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "[REDACTED]") if self._secret else text

    def _project(self, project: ProjectRef) -> Any:
        # lazy: no GET, python-gitlab URL-encodes a path id ("group%2Fproj"). Building one
        # constructs every sub-manager (~0.3 ms, 23% of a worker's CPU in bench/e2e), so keep
        # them: they hold no per-call state.
        obj = self._projects.get(project)
        if obj is None:
            if len(self._projects) >= 1024:
                self._projects.clear()
            obj = self._projects[project] = self._gl.projects.get(project, lazy=True)
        return obj

    def _noteable(self, project: ProjectRef, kind: str, iid: int) -> Any:
        if kind not in KINDS:
            raise ValueError(f"kind must be 'issue' or 'mr', not {kind!r}")
        p = self._project(project)
        mgr = p.issues if kind == "issue" else p.mergerequests
        return mgr.get(iid, lazy=True)

    def _write(self, action: str, project: ProjectRef, fields: dict,
               send: Callable[[], T]) -> T | dict:
        """Every write goes through here: in dry-run it is logged and not sent."""
        if self.dry_run:
            log.info("dry-run: %s on %s", action, project,
                     extra={"dry_run": True, "action": action, "project": project,
                            "fields": fields})
            return {"dry_run": True, "action": action, "project": project, **fields}
        return self._call(action, send)

    @staticmethod
    def _plain(obj: Any) -> dict:
        return obj.asdict() if hasattr(obj, "asdict") else dict(obj)

    def _list(self, what: str, lister: Callable[..., Iterable[Any]], **filters: Any) -> list[dict]:
        query = {k: v for k, v in filters.items() if v is not None}
        return self._call(what, lambda: [self._plain(o) for o in
                                         lister(get_all=True, per_page=self.per_page, **query)])

    def _first(self, limit: int, what: str, lister: Callable[..., Any], **filters: Any) -> list[dict]:
        """At most `limit` items, reading pages only as far as needed."""
        query = {k: v for k, v in filters.items() if v is not None}
        per_page = max(1, min(100, limit))

        def read() -> list[dict]:
            out: list[dict] = []
            for obj in lister(iterator=True, per_page=per_page, **query):
                out.append(self._plain(obj))
                if len(out) >= limit:
                    break
            return out

        return self._call(what, read)

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

    def retry_pipeline(self, project: ProjectRef, pipeline_id: int) -> dict:
        pipe = self._project(project).pipelines.get(pipeline_id, lazy=True)
        return self._write("retry_pipeline", project, {"pipeline_id": pipeline_id},
                           lambda: pipe.retry())

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

    # -- issues and merge requests -----------------------------------------------------------
    def get_issue(self, project: ProjectRef, iid: int) -> dict:
        return self._call("get_issue", lambda: self._plain(self._project(project).issues.get(iid)))

    def find_issues(self, project: ProjectRef, labels: Iterable[str] | None = None,
                    search: str | None = None, state: str | None = "opened") -> list[dict]:
        """Issues having ALL `labels`, matching `search` in title/description, in `state`
        ("opened", "closed", or None/"all")."""
        return self._list("find_issues", self._project(project).issues.list,
                          labels=",".join(labels) if labels else None, search=search,
                          state=None if state == "all" else state)

    def create_issue(self, project: ProjectRef, title: str, description: str = "",
                     labels: Iterable[str] = ()) -> dict:
        fields = {"title": title, "description": description, "labels": ",".join(labels)}
        issues = self._project(project).issues
        return self._write("create_issue", project, fields,
                           lambda: self._plain(issues.create(fields)))

    def update_issue(self, project: ProjectRef, iid: int, **fields: Any) -> dict:
        """PUT the given fields (title, description, labels, add_labels, remove_labels,
        state_event...); label lists may be given as lists."""
        fields = {k: (",".join(v) if k.endswith("labels") and not isinstance(v, str) else v)
                  for k, v in fields.items()}
        issues = self._project(project).issues
        return self._write("update_issue", project, {"iid": iid, **fields},
                           lambda: issues.update(iid, fields))

    def _update_noteable(self, action: str, project: ProjectRef, kind: str, iid: int,
                         fields: dict) -> dict:
        if kind not in KINDS:
            raise ValueError(f"kind must be 'issue' or 'mr', not {kind!r}")
        p = self._project(project)
        mgr = p.issues if kind == "issue" else p.mergerequests
        return self._write(action, project, {"kind": kind, "iid": iid, **fields},
                           lambda: mgr.update(iid, fields))

    def add_labels(self, project: ProjectRef, kind: str, iid: int, labels: Iterable[str]) -> dict:
        return self._update_noteable("add_labels", project, kind, iid,
                                     {"add_labels": ",".join(labels)})

    def remove_labels(self, project: ProjectRef, kind: str, iid: int,
                      labels: Iterable[str]) -> dict:
        return self._update_noteable("remove_labels", project, kind, iid,
                                     {"remove_labels": ",".join(labels)})

    def relabel(self, project: ProjectRef, kind: str, iid: int, add: Iterable[str] = (),
                remove: Iterable[str] = ()) -> dict:
        """Add and remove labels in one PUT (GitLab takes add_labels and remove_labels together)."""
        fields = {k: ",".join(v) for k, v in (("add_labels", list(add)),
                                               ("remove_labels", list(remove))) if v}
        return self._update_noteable("relabel", project, kind, iid, fields)

    def get_mr(self, project: ProjectRef, mr_iid: int) -> dict:
        return self._call("get_mr",
                          lambda: self._plain(self._project(project).mergerequests.get(mr_iid)))

    def mr_closes_issues(self, project: ProjectRef, mr_iid: int) -> list[dict]:
        mr = self._project(project).mergerequests.get(mr_iid, lazy=True)
        return self._list("mr_closes_issues", mr.closes_issues)

    def mr_approvals(self, project: ProjectRef, mr_iid: int) -> dict:
        mr = self._project(project).mergerequests.get(mr_iid, lazy=True)
        return self._call("mr_approvals", lambda: self._plain(mr.approvals.get()))

    def create_mr(self, project: ProjectRef, source_branch: str, target_branch: str, title: str,
                  description: str = "", labels: Iterable[str] = (),
                  remove_source_branch: bool = True) -> dict:
        fields = {"source_branch": source_branch, "target_branch": target_branch,
                  "title": title, "description": description, "labels": ",".join(labels),
                  "remove_source_branch": remove_source_branch}
        mrs = self._project(project).mergerequests
        return self._write("create_mr", project, fields, lambda: self._plain(mrs.create(fields)))

    def find_mrs(self, project: ProjectRef, source_branch: str | None = None,
                 labels: Iterable[str] | None = None, search: str | None = None,
                 state: str | None = "opened") -> list[dict]:
        """Merge requests from `source_branch`, having ALL `labels`, matching `search` in
        title/description, in `state` ("opened", "closed", "merged", or None/"all")."""
        return self._list("find_mrs", self._project(project).mergerequests.list,
                          source_branch=source_branch,
                          labels=",".join(labels) if labels else None, search=search,
                          state=None if state == "all" else state)

    def update_mr(self, project: ProjectRef, mr_iid: int, **fields: Any) -> dict:
        """PUT the given fields (title, description, labels, state_event...)."""
        fields = {k: (",".join(v) if k.endswith("labels") and not isinstance(v, str) else v)
                  for k, v in fields.items()}
        mrs = self._project(project).mergerequests
        return self._write("update_mr", project, {"iid": mr_iid, **fields},
                           lambda: mrs.update(mr_iid, fields))

    def label_events(self, project: ProjectRef, kind: str, iid: int) -> list[dict]:
        """Who added or removed which label, oldest first (resource label events)."""
        obj = self._noteable(project, kind, iid)
        return self._list("label_events", obj.resourcelabelevents.list)

    # -- notes ---------------------------------------------------------------------------------
    def list_notes(self, project: ProjectRef, kind: str, iid: int) -> list[dict]:
        """All notes (system notes included), oldest first."""
        obj = self._noteable(project, kind, iid)
        return self._list("list_notes", obj.notes.list, sort="asc", order_by="created_at")

    def recent_notes(self, project: ProjectRef, kind: str, iid: int, limit: int = 20) -> list[dict]:
        """The newest `limit` notes, newest first."""
        obj = self._noteable(project, kind, iid)
        return self._first(limit, "recent_notes", obj.notes.list, sort="desc",
                           order_by="created_at")

    def updated_noteables(self, project: ProjectRef, kind: str, updated_after: str,
                          limit: int = 50) -> list[dict]:
        """Open issues or merge requests changed after `updated_after`, newest change first."""
        p = self._project(project)
        mgr = p.issues if kind == "issue" else p.mergerequests
        return self._first(limit, "updated_noteables", mgr.list, state="opened",
                           updated_after=updated_after, order_by="updated_at", sort="desc")

    def group_projects(self, group: str, limit: int = 200) -> list[dict]:
        """A group's projects, its subgroups' included, at most `limit`."""
        return self._first(limit, "group_projects",
                           self._gl.groups.get(group, lazy=True).projects.list,
                           include_subgroups=True, archived=False, order_by="id", sort="asc")

    def get_note(self, project: ProjectRef, kind: str, iid: int, note_id: int) -> dict:
        """One note as GitLab has it now (author, body, system, created_at, updated_at)."""
        notes = self._noteable(project, kind, iid).notes
        return self._call("get_note", lambda: self._plain(notes.get(note_id)))

    def create_note(self, project: ProjectRef, kind: str, iid: int, body: str) -> dict:
        notes = self._noteable(project, kind, iid).notes
        return self._write("create_note", project, {"kind": kind, "iid": iid, "body": body},
                           lambda: self._plain(notes.create({"body": body})))

    def update_note(self, project: ProjectRef, kind: str, iid: int, note_id: int,
                    body: str) -> dict:
        notes = self._noteable(project, kind, iid).notes
        return self._write("update_note", project,
                           {"kind": kind, "iid": iid, "note_id": note_id, "body": body},
                           lambda: notes.update(note_id, {"body": body}))

    def award_emoji(self, project: ProjectRef, kind: str, iid: int, note_id: int,
                    name: str) -> dict:
        """Award `name` (e.g. "eyes", "white_check_mark") on a note."""
        note = self._noteable(project, kind, iid).notes.get(note_id, lazy=True)
        return self._write("award_emoji", project,
                           {"kind": kind, "iid": iid, "note_id": note_id, "name": name},
                           lambda: self._plain(note.awardemojis.create({"name": name})))

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

    def resolve_ref(self, project: ProjectRef, ref: str) -> str:
        """The commit SHA a branch, tag or commit id names now (GET commits/:ref accepts
        each). NotFound when the project has no such ref."""
        commits = self._project(project).commits
        return self._call("resolve_ref", lambda: str(commits.get(ref).id))

    def repository_tree(self, project: ProjectRef, path: str, ref: str, *,
                        limit: int = 1000) -> list[dict]:
        """Entries (`type` blob or tree, `path`) under `path` at `ref`, recursively, at most
        `limit` of them (reading pages only as far as needed)."""
        return self._first(limit, "repository_tree", self._project(project).repository_tree,
                           path=path, ref=ref, recursive=True)

    def file_raw(self, project: ProjectRef, path: str, ref: str, *, max_bytes: int) -> bytes:
        """A file's bytes at `ref`, streamed; FileTooLarge past `max_bytes` (nothing more is
        read)."""
        files = self._project(project).files

        def read() -> bytes:
            chunks: Iterator[bytes] = files.raw(file_path=path, ref=ref, streamed=True,
                                                iterator=True, chunk_size=64 * 1024)
            buf = bytearray()
            try:
                for chunk in chunks:
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise FileTooLarge(f"file_raw: {path} is larger than {max_bytes} bytes")
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()
            return bytes(buf)

        return self._call("file_raw", read)

    def create_snippet(self, project: ProjectRef, title: str, files: list[dict],
                       visibility: str = "private", description: str | None = None) -> dict:
        """A project snippet of `files` ([{file_path, content}]); private: the project's
        members see it, as they see the thread that links it."""
        fields: dict[str, Any] = {"title": title, "visibility": visibility, "files": files}
        if description:
            fields["description"] = description
        snippets = self._project(project).snippets
        return self._write("create_snippet", project, {"title": title},
                           lambda: self._plain(snippets.create(fields)))

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

    def create_branch(self, project: ProjectRef, branch: str, ref: str) -> dict:
        branches = self._project(project).branches
        fields = {"branch": branch, "ref": ref}
        return self._write("create_branch", project, fields,
                           lambda: self._plain(branches.create(fields)))

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


class _BoundedGitlab(gitlab.Gitlab):
    """python-gitlab with one retry bound for every request (its default is 10 per call, and
    list pagination passes its own). Total attempts per HTTP request: 1 + max_retries."""

    def __init__(self, *args: Any, max_retries: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_retries = max_retries

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["max_retries"] = self._max_retries
        kwargs["obey_rate_limit"] = True
        # A POST answered 5xx, or timed out, may still have been applied (a proxy's 502 after
        # GitLab created the note): sending it again could double a comment or a job retry.
        # So only idempotent verbs retry transient errors; every verb retries 429, which
        # GitLab answers before doing anything.
        kwargs["retry_transient_errors"] = verb.lower() != "post"
        return super().http_request(verb, path, *args, **kwargs)


def _json(answer: Any) -> dict:
    """python-gitlab's http_get returns the decoded JSON for JSON answers (a Response only for
    raw or streamed ones, which these calls never ask for)."""
    if not isinstance(answer, dict):
        raise GitLabError(f"expected a JSON object from GitLab, got {type(answer).__name__}")
    return answer


def _encode(project: ProjectRef) -> str:
    return str(gitlab.utils.EncodedId(project))


def _path(url: str | None) -> str:
    """The path of a URL without its query (which could carry anything)."""
    return urlsplit(url or "").path


def _parse_retry_after(raw: str) -> float | None:
    """Retry-After is delta-seconds or an HTTP date."""
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
