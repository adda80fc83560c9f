"""An in-memory stand-in for `tasks.gitlab.client.GitLabAdapter`, for handler unit tests.

Prow's fake GitHub client, for GitLab, but with no model of its own: every adapter method sends
the request python-gitlab would send (method, URL-encoded path, params, body) straight into the
HTTP fake's request handler (`tests/support/fake_gitlab/service.Api`) over the same `FakeState`,
as the bot (user 1, a Maintainer of every project it creates unless told otherwise). So the two
fakes cannot drift: same permissions, same 404s and 403s, same closing-issue grammar, same
scoped labels, and the adapter's typed errors (`NotFound`, `Forbidden`, `RateLimited`,
`GitLabError`) where the HTTP path would raise them. Side effects are recorded as strings in
`effects`, in the HTTP fake's format:

    "group/proj#5:note_created"          "group/proj!3:label_added:bug"
    "group/proj#5:note_updated:1001"     "group/proj:job_retried:100->1000"
    "group/proj#5:emoji_awarded:1001:eyes"

(`#` for issues, `!` for merge requests.) `fail_next(method, exc)` scripts one error; dry-run
answers writes the way the adapter does, without touching the state.

    gl = RecordingGitLab()
    pipe = gl.add_pipeline("group/proj", jobs=[{"name": "unit", "status": "failed"}])
    handle(event, gl)
    assert gl.effects == ["group/proj:job_retried:100->1000"]

Projects are created on first mention (an id becomes `project-<id>`, a path gets a new id);
`add_project(path, id)` names one first. `gl.state` is the FakeState, for anything else.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

from tasks.gitlab.client import (
    KINDS,
    FileTooLarge,
    Forbidden,
    GitLabError,
    GitLabUnavailable,
    JobLog,
    NotFound,
    RateLimited,
)
from tests.support.fake_gitlab.service import Api, Result
from tests.support.fake_gitlab.state import BOT_USER, FakeError, FakeState

BOT = dict(BOT_USER)


def _join(labels: Iterable[str]) -> str:
    return ",".join(labels)


class RecordingGitLab:
    """Same public methods as GitLabAdapter, answered by the fake's request handler."""

    def __init__(self, *, dry_run: bool = False, max_log_bytes: int = 8 * 1024 * 1024,
                 state: FakeState | None = None, base_url: str = "https://gitlab.example") -> None:
        self.dry_run = dry_run
        self.max_log_bytes = max_log_bytes
        self.state = state or FakeState(base_url)
        self.api = Api(self.state)
        self.calls: list[tuple[str, tuple, dict]] = []  # (method, args, kwargs), reads too
        self._failures: dict[str, list[BaseException]] = defaultdict(list)

    # -- records ---------------------------------------------------------------------------------
    @property
    def effects(self) -> list[str]:
        return self.state.side_effects

    @property
    def user(self) -> dict:
        return self.state._user_brief(BOT["id"])

    @property
    def issues(self) -> dict[tuple[str, int], dict]:
        """{(project path, iid): issue as the API shows it}."""
        return {(p["path_with_namespace"], iid): self.state.view_issue(i)
                for p in self.state.projects.values() for iid, i in p["_issues"].items()}

    @property
    def mrs(self) -> dict[tuple[str, int], dict]:
        return {(p["path_with_namespace"], iid): self.state.view_mr(m)
                for p in self.state.projects.values() for iid, m in p["_mrs"].items()}

    @property
    def notes(self) -> dict[tuple[str, str, int], list[dict]]:
        """{(project path, "issue"|"mr", iid): notes oldest first}."""
        out: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
        for p in self.state.projects.values():
            for kind, coll in (("issue", p["_issues"]), ("mr", p["_mrs"])):
                for iid, obj in coll.items():
                    out[(p["path_with_namespace"], kind, iid)] = [
                        self.state.view_note(n) for n in obj["_notes"]]
        return out

    @property
    def pipelines(self) -> dict[int, dict]:
        return {i: self.state.view_pipeline(p, full=True) for i, p in self.state.pipelines.items()}

    @property
    def jobs(self) -> dict[int, dict]:
        return {i: self.state.view_job(j) for i, j in self.state.jobs.items()}

    # -- test helpers --------------------------------------------------------------------------
    def fail_next(self, method: str, exc: BaseException) -> None:
        """The next call of `method` raises `exc` (e.g. RateLimited("slow down", retry_after=5))."""
        self._failures[method].append(exc)

    def _enter(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        if self._failures.get(method):
            raise self._failures[method].pop(0)

    def _project_record(self, project: Any) -> dict:
        """The project, created on first mention."""
        try:
            return self.state.project(project)
        except FakeError:
            if isinstance(project, int) or str(project).isdigit():
                self.state.add_project(f"project-{project}", id=int(project))
            else:
                self.state.add_project(str(project))
            return self.state.project(project)

    def path(self, project: Any) -> str:
        return self._project_record(project)["path_with_namespace"]

    def add_project(self, path: str, id: int | None = None, **kw: Any) -> dict:
        """kw: FakeState.add_project's (tier, visibility, members, bot_access, files, ...)."""
        return self.state.add_project(path, id=id, **kw)

    def add_pipeline(self, project: Any, ref: str = "main", status: str = "failed",
                     jobs: Iterable[dict] = (), sha: str | None = None, id: int | None = None,
                     **kw: Any) -> dict:
        pid = self._project_record(project)["id"]
        made = self.state.add_pipeline(pid, ref=ref, sha=sha, status=status, id=id, **kw)
        jobs_out = [self.add_job(pid, made["pipeline"]["id"], **j) for j in jobs]
        if jobs_out:
            self.state.pipelines[made["pipeline"]["id"]]["_explicit_status"] = False
        return {"pipeline": self.state.view_pipeline(self.state.pipelines[made["pipeline"]["id"]],
                                                     full=True), "jobs": jobs_out}

    def add_job(self, project: Any, pipeline_id: int, name: str, stage: str = "test",
                status: str = "failed", failure_reason: str | None = None,
                allow_failure: bool = False, log: bytes | str = b"",
                id: int | None = None, **kw: Any) -> dict:
        pid = self._project_record(project)["id"]
        return self.state.add_job(pid, pipeline_id, name, stage=stage, status=status,
                                  failure_reason=failure_reason, allow_failure=allow_failure,
                                  trace=log, id=id, **kw)

    def add_issue(self, project: Any, iid: int, title: str = "issue", description: str = "",
                  labels: Iterable[str] = (), state: str = "opened", **kw: Any) -> dict:
        pid = self._project_record(project)["id"]
        return self.state.add_issue(pid, title, description, labels=list(labels), state=state,
                                    iid=iid, **kw)

    def add_mr(self, project: Any, iid: int, title: str = "mr", description: str = "",
               source_branch: str = "feature", target_branch: str = "main",
               labels: Iterable[str] = (), closes: Iterable[int] | None = None,
               approvals_required: int = 0, approved_by: Iterable[int] = (), **kw: Any) -> dict:
        pid = self._project_record(project)["id"]
        for uid in approved_by:
            self.state.ensure_user(int(uid))
        return self.state.add_mr(pid, title, source_branch, target_branch,
                                 description=description, labels=list(labels), iid=iid,
                                 closes_issues=closes, approvals_required=approvals_required,
                                 approved_by=approved_by, **kw)

    def add_note(self, project: Any, kind: str, iid: int, body: str,
                 author: dict | None = None, system: bool = False) -> dict:
        pid = self._project_record(project)["id"]
        author_id = None
        if author is not None:
            self.state.ensure_user(int(author["id"]), author.get("username"))
            author_id = int(author["id"])
        return self.state.add_note(pid, kind, iid, body, author_id=author_id, system=system)

    def add_member(self, project: Any, user_id: int, access_level: int) -> dict:
        return self.state.add_member(self._project_record(project)["id"], user_id, access_level)

    def add_freeze_period(self, project: Any, freeze_start: str, freeze_end: str,
                          cron_timezone: str = "UTC") -> dict:
        return self.state.add_freeze_period(self._project_record(project)["id"], freeze_start,
                                            freeze_end, cron_timezone)

    def human_relabel(self, project: Any, kind: str, iid: int, user: dict,
                      add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """A person changed the labels in GitLab's UI (tests): recorded as their label events,
        with the same scoped-label rules as the API."""
        self.state.ensure_user(int(user["id"]), user.get("username"))
        self.state.relabel_as(self._project_record(project)["id"], kind, iid, int(user["id"]),
                              add=add, remove=remove)

    def edit_note_as_author(self, project: Any, kind: str, iid: int, note_id: int,
                            body: str) -> dict:
        """A person edits their own note (e.g. a command) in GitLab's UI."""
        return self.state.edit_note(self._project_record(project)["id"], kind, iid, note_id,
                                    body)

    # -- the request path ----------------------------------------------------------------------
    def _path(self, project: Any, rest: str = "") -> str:
        """`/projects/<id or URL-encoded path>...` as python-gitlab builds it."""
        self._project_record(project)
        ref = str(project) if isinstance(project, int) else quote(str(project), safe="")
        return f"/projects/{ref}{rest}"

    def _send(self, what: str, method: str, path: str, params: dict | None = None) -> Any:
        """One request through the fake's handler, errors translated as the adapter does."""
        try:
            result: Result = self.api.dispatch(method, path, self.state.users[BOT["id"]],
                                               dict(params or {}))
        except FakeError as e:
            raise self._translate(what, e) from None
        if result.raw is not None:
            return result
        return result.payload

    @staticmethod
    def _translate(what: str, e: FakeError) -> GitLabError:
        # python-gitlab's error_message: the body's "message", else its "error".
        body = e.body
        detail = body.get("error", body.get("message", body))
        msg = f"{what}: HTTP {e.status}: {detail}"
        if e.status == 404:
            return NotFound(msg, e.status)
        if e.status in (401, 403):
            return Forbidden(msg, e.status)
        if e.status == 429:
            return RateLimited(msg, e.status)
        if e.status >= 500:
            return GitLabUnavailable(msg, e.status)
        return GitLabError(msg, e.status)

    def _write(self, action: str, project: Any, fields: dict, method: str, path: str,
               params: dict) -> Any:
        """Every write goes through here: in dry-run it is answered like the adapter's."""
        if self.dry_run:
            return {"dry_run": True, "action": action, "project": project, **fields}
        return self._send(action, method, path, params)

    @staticmethod
    def _kind(kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"kind must be 'issue' or 'mr', not {kind!r}")
        return "issues" if kind == "issue" else "merge_requests"

    # -- the adapter's API -------------------------------------------------------------------------
    def current_user(self) -> dict:
        self._enter("current_user")
        return self._send("current_user", "GET", "/user")

    def get_project(self, project: Any) -> dict:
        self._enter("get_project", project)
        return self._send("get_project", "GET", self._path(project))

    def access_level(self, project: Any, user_id: int) -> int:
        self._enter("access_level", project, user_id)
        try:
            member = self._send("access_level", "GET",
                                self._path(project, f"/members/all/{user_id}"))
        except NotFound:
            return 0
        return int(member["access_level"])

    def freeze_periods(self, project: Any) -> list[dict]:
        self._enter("freeze_periods", project)
        return self._send("freeze_periods", "GET", self._path(project, "/freeze_periods"))

    def get_pipeline(self, project: Any, pipeline_id: int) -> dict:
        self._enter("get_pipeline", project, pipeline_id)
        return self._send("get_pipeline", "GET", self._path(project, f"/pipelines/{pipeline_id}"))

    def latest_pipeline(self, project: Any, ref: str) -> dict | None:
        self._enter("latest_pipeline", project, ref)
        try:
            return self._send("latest_pipeline", "GET", self._path(project, "/pipelines/latest"),
                              {"ref": ref})
        except NotFound:
            return None

    def pipeline_jobs(self, project: Any, pipeline_id: int,
                      scope: str | Iterable[str] | None = None) -> list[dict]:
        self._enter("pipeline_jobs", project, pipeline_id, scope=scope)
        if isinstance(scope, str):
            scope = [scope]
        params = {"scope[]": list(scope)} if scope is not None else {}
        return self._send("pipeline_jobs", "GET",
                          self._path(project, f"/pipelines/{pipeline_id}/jobs"), params)

    def recent_jobs(self, project: Any, scopes: Iterable[str],
                    limit: int = 1000) -> Iterator[dict]:
        self._enter("recent_jobs", project, scopes, limit=limit)
        path = self._path(project, "/jobs")
        scopes = list(scopes)

        def gen() -> Iterator[dict]:
            jobs = self._send("recent_jobs", "GET", path, {"scope[]": scopes})
            yield from jobs[:limit]

        return gen()

    def failed_pipelines(self, project: Any, updated_after: str, limit: int = 100) -> list[dict]:
        self._enter("failed_pipelines", project, updated_after, limit=limit)
        return self._send("failed_pipelines", "GET", self._path(project, "/pipelines"), {
            "status": "failed", "updated_after": updated_after, "order_by": "updated_at",
            "sort": "desc"})[:limit]

    def get_job(self, project: Any, job_id: int) -> dict:
        self._enter("get_job", project, job_id)
        return self._send("get_job", "GET", self._path(project, f"/jobs/{job_id}"))

    def retry_job(self, project: Any, job_id: int) -> dict:
        self._enter("retry_job", project, job_id)
        return self._write("retry_job", project, {"job_id": job_id}, "POST",
                           self._path(project, f"/jobs/{job_id}/retry"), {})

    def job_log(self, project: Any, job_id: int) -> JobLog:
        """The tail of the log, capped as the adapter caps it (last `max_log_bytes`, starting
        on a line boundary when the head was dropped)."""
        self._enter("job_log", project, job_id)
        result = self._send("job_log", "GET", self._path(project, f"/jobs/{job_id}/trace"))
        cap = self.max_log_bytes
        buf = bytearray()
        dropped = 0
        for chunk in result.raw:
            buf += chunk
            if len(buf) > cap:
                extra = len(buf) - cap
                del buf[:extra]
                dropped += extra
        if dropped:
            nl = buf.find(b"\n", 0, 64 * 1024)
            if 0 <= nl < len(buf) - 1:
                del buf[:nl + 1]
                dropped += nl + 1
        return JobLog(bytes(buf), dropped)

    def test_report(self, project: Any, pipeline_id: int) -> dict:
        self._enter("test_report", project, pipeline_id)
        return self._send("test_report", "GET",
                          self._path(project, f"/pipelines/{pipeline_id}/test_report"))

    def get_issue(self, project: Any, iid: int) -> dict:
        self._enter("get_issue", project, iid)
        return self._send("get_issue", "GET", self._path(project, f"/issues/{iid}"))

    def find_issues(self, project: Any, labels: Iterable[str] | None = None,
                    search: str | None = None, state: str | None = "opened") -> list[dict]:
        self._enter("find_issues", project, labels=labels, search=search, state=state)
        params = {k: v for k, v in (("labels", _join(labels) if labels else None),
                                    ("search", search),
                                    ("state", None if state == "all" else state))
                  if v is not None}
        return self._send("find_issues", "GET", self._path(project, "/issues"), params)

    def create_issue(self, project: Any, title: str, description: str = "",
                     labels: Iterable[str] = ()) -> dict:
        self._enter("create_issue", project, title, description, labels)
        fields = {"title": title, "description": description, "labels": _join(labels)}
        return self._write("create_issue", project, fields, "POST",
                           self._path(project, "/issues"), fields)

    def update_issue(self, project: Any, iid: int, **fields: Any) -> dict:
        self._enter("update_issue", project, iid, **fields)
        fields = {k: (_join(v) if k.endswith("labels") and not isinstance(v, str) else v)
                  for k, v in fields.items()}
        return self._write("update_issue", project, {"iid": iid, **fields}, "PUT",
                           self._path(project, f"/issues/{iid}"), fields)

    def _update_noteable(self, action: str, project: Any, kind: str, iid: int,
                         fields: dict) -> dict:
        path = self._path(project, f"/{self._kind(kind)}/{iid}")
        return self._write(action, project, {"kind": kind, "iid": iid, **fields}, "PUT", path,
                           fields)

    def add_labels(self, project: Any, kind: str, iid: int, labels: Iterable[str]) -> dict:
        self._enter("add_labels", project, kind, iid, labels)
        return self._update_noteable("add_labels", project, kind, iid,
                                     {"add_labels": _join(labels)})

    def remove_labels(self, project: Any, kind: str, iid: int, labels: Iterable[str]) -> dict:
        self._enter("remove_labels", project, kind, iid, labels)
        return self._update_noteable("remove_labels", project, kind, iid,
                                     {"remove_labels": _join(labels)})

    def relabel(self, project: Any, kind: str, iid: int, add: Iterable[str] = (),
                remove: Iterable[str] = ()) -> dict:
        self._enter("relabel", project, kind, iid, add, remove)
        fields = {k: _join(v) for k, v in (("add_labels", list(add)),
                                            ("remove_labels", list(remove))) if v}
        return self._update_noteable("relabel", project, kind, iid, fields)

    def get_mr(self, project: Any, mr_iid: int) -> dict:
        self._enter("get_mr", project, mr_iid)
        return self._send("get_mr", "GET", self._path(project, f"/merge_requests/{mr_iid}"))

    def mr_closes_issues(self, project: Any, mr_iid: int) -> list[dict]:
        self._enter("mr_closes_issues", project, mr_iid)
        return self._send("mr_closes_issues", "GET",
                          self._path(project, f"/merge_requests/{mr_iid}/closes_issues"))

    def mr_approvals(self, project: Any, mr_iid: int) -> dict:
        self._enter("mr_approvals", project, mr_iid)
        return self._send("mr_approvals", "GET",
                          self._path(project, f"/merge_requests/{mr_iid}/approvals"))

    def create_mr(self, project: Any, source_branch: str, target_branch: str, title: str,
                  description: str = "", labels: Iterable[str] = (),
                  remove_source_branch: bool = True) -> dict:
        self._enter("create_mr", project, source_branch, target_branch, title, description,
                    labels, remove_source_branch)
        fields = {"source_branch": source_branch, "target_branch": target_branch,
                  "title": title, "description": description, "labels": _join(labels),
                  "remove_source_branch": remove_source_branch}
        return self._write("create_mr", project, fields, "POST",
                           self._path(project, "/merge_requests"), fields)

    def find_mrs(self, project: Any, source_branch: str | None = None,
                 labels: Iterable[str] | None = None, search: str | None = None,
                 state: str | None = "opened") -> list[dict]:
        self._enter("find_mrs", project, source_branch=source_branch, labels=labels,
                    search=search, state=state)
        params = {k: v for k, v in (("source_branch", source_branch),
                                    ("labels", _join(labels) if labels else None),
                                    ("search", search),
                                    ("state", None if state == "all" else state))
                  if v is not None}
        return self._send("find_mrs", "GET", self._path(project, "/merge_requests"), params)

    def update_mr(self, project: Any, mr_iid: int, **fields: Any) -> dict:
        self._enter("update_mr", project, mr_iid, **fields)
        fields = {k: (_join(v) if k.endswith("labels") and not isinstance(v, str) else v)
                  for k, v in fields.items()}
        return self._write("update_mr", project, {"iid": mr_iid, **fields}, "PUT",
                           self._path(project, f"/merge_requests/{mr_iid}"), fields)

    def label_events(self, project: Any, kind: str, iid: int) -> list[dict]:
        self._enter("label_events", project, kind, iid)
        return self._send("label_events", "GET",
                          self._path(project, f"/{self._kind(kind)}/{iid}/resource_label_events"))

    def get_note(self, project: Any, kind: str, iid: int, note_id: int) -> dict:
        self._enter("get_note", project, kind, iid, note_id)
        return self._send("get_note", "GET",
                          self._path(project, f"/{self._kind(kind)}/{iid}/notes/{note_id}"))

    def commits_between(self, project: Any, base: str, head: str) -> int:
        self._enter("commits_between", project, base, head)
        found = self._send("commits_between", "GET", self._path(project, "/repository/compare"),
                           {"from": base, "to": head})
        return len(found.get("commits") or [])

    def get_commit(self, project: Any, sha: str) -> dict:
        self._enter("get_commit", project, sha)
        return self._send("get_commit", "GET", self._path(project, f"/repository/commits/{sha}"))

    def list_notes(self, project: Any, kind: str, iid: int) -> list[dict]:
        self._enter("list_notes", project, kind, iid)
        path = self._path(project, f"/{self._kind(kind)}/{iid}/notes")
        return self._send("list_notes", "GET", path, {"sort": "asc", "order_by": "created_at"})

    def recent_notes(self, project: Any, kind: str, iid: int, limit: int = 20) -> list[dict]:
        self._enter("recent_notes", project, kind, iid, limit=limit)
        path = self._path(project, f"/{self._kind(kind)}/{iid}/notes")
        return self._send("recent_notes", "GET", path,
                          {"sort": "desc", "order_by": "created_at"})[:limit]

    def updated_noteables(self, project: Any, kind: str, updated_after: str,
                          limit: int = 50) -> list[dict]:
        self._enter("updated_noteables", project, kind, updated_after, limit=limit)
        return self._send("updated_noteables", "GET", self._path(project, f"/{self._kind(kind)}"),
                          {"state": "opened", "updated_after": updated_after,
                           "order_by": "updated_at", "sort": "desc"})[:limit]

    def group_projects(self, group: str, limit: int = 200) -> list[dict]:
        self._enter("group_projects", group, limit=limit)
        return self._send("group_projects", "GET", f"/groups/{quote(str(group), safe='')}/projects",
                          {"include_subgroups": True, "archived": False, "order_by": "id",
                           "sort": "asc"})[:limit]

    def create_note(self, project: Any, kind: str, iid: int, body: str) -> dict:
        self._enter("create_note", project, kind, iid, body)
        path = self._path(project, f"/{self._kind(kind)}/{iid}/notes")
        return self._write("create_note", project, {"kind": kind, "iid": iid, "body": body},
                           "POST", path, {"body": body})

    def update_note(self, project: Any, kind: str, iid: int, note_id: int, body: str) -> dict:
        self._enter("update_note", project, kind, iid, note_id, body)
        path = self._path(project, f"/{self._kind(kind)}/{iid}/notes/{note_id}")
        return self._write("update_note", project,
                           {"kind": kind, "iid": iid, "note_id": note_id, "body": body},
                           "PUT", path, {"body": body})

    def award_emoji(self, project: Any, kind: str, iid: int, note_id: int, name: str) -> dict:
        self._enter("award_emoji", project, kind, iid, note_id, name)
        path = self._path(project, f"/{self._kind(kind)}/{iid}/notes/{note_id}/award_emoji")
        return self._write("award_emoji", project,
                           {"kind": kind, "iid": iid, "note_id": note_id, "name": name},
                           "POST", path, {"name": name})

    def get_file(self, project: Any, path: str, ref: str) -> dict:
        self._enter("get_file", project, path, ref)
        data = dict(self._send("get_file", "GET",
                               self._path(project, f"/repository/files/{quote(path, safe='')}"),
                               {"ref": ref}))
        data["content"] = base64.b64decode(data.get("content") or "").decode("utf-8", "replace")
        data["encoding"] = "text"
        return data

    def resolve_ref(self, project: Any, ref: str) -> str:
        self._enter("resolve_ref", project, ref)
        found = self._send("resolve_ref", "GET",
                           self._path(project, f"/repository/commits/{quote(ref, safe='')}"))
        return str(found["id"])

    def repository_tree(self, project: Any, path: str, ref: str, *, limit: int = 1000) -> list[dict]:
        self._enter("repository_tree", project, path, ref, limit=limit)
        found = self._send("repository_tree", "GET", self._path(project, "/repository/tree"),
                           {"path": path, "ref": ref, "recursive": True})
        return list(found)[:limit]

    def file_raw(self, project: Any, path: str, ref: str, *, max_bytes: int) -> bytes:
        self._enter("file_raw", project, path, ref, max_bytes=max_bytes)
        result = self._send("file_raw", "GET",
                            self._path(project, f"/repository/files/{quote(path, safe='')}/raw"),
                            {"ref": ref})
        data = b"".join(result.raw)
        if len(data) > max_bytes:
            raise FileTooLarge(f"file_raw: {path} is larger than {max_bytes} bytes")
        return data

    def create_snippet(self, project: Any, title: str, files: list[dict],
                       visibility: str = "private", description: str | None = None) -> dict:
        self._enter("create_snippet", project, title, files, visibility=visibility)
        params: dict[str, Any] = {"title": title, "visibility": visibility, "files": files}
        if description:
            params["description"] = description
        return self._write("create_snippet", project, {"title": title}, "POST",
                           self._path(project, "/snippets"), params)

    def ci_lint(self, project: Any, content: str, ref: str | None = None,
                dry_run: bool = False) -> dict:
        self._enter("ci_lint", project, content, ref=ref, dry_run=dry_run)
        data: dict[str, Any] = {"content": content}
        if dry_run:
            data["dry_run"] = True
            if ref:
                data["ref"] = ref
        return self._send("ci_lint", "POST", self._path(project, "/ci/lint"), data)

    def create_commit(self, project: Any, branch: str, message: str, actions: list[dict],
                      start_branch: str | None = None) -> dict:
        self._enter("create_commit", project, branch, message, actions,
                    start_branch=start_branch)
        fields: dict[str, Any] = {"branch": branch, "commit_message": message,
                                  "actions": actions}
        if start_branch:
            fields["start_branch"] = start_branch
        return self._write("create_commit", project, fields, "POST",
                           self._path(project, "/repository/commits"), fields)

    def create_deployment(self, project: Any, environment: str, sha: str, ref: str,
                          status: str = "running", tag: bool = False) -> dict:
        self._enter("create_deployment", project, environment, sha, ref, status, tag)
        fields = {"environment": environment, "sha": sha, "ref": ref, "tag": tag,
                  "status": status}
        return self._write("create_deployment", project, fields, "POST",
                           self._path(project, "/deployments"), fields)

    def update_deployment(self, project: Any, deployment_id: int, status: str) -> dict:
        self._enter("update_deployment", project, deployment_id, status)
        return self._write("update_deployment", project,
                           {"deployment_id": deployment_id, "status": status}, "PUT",
                           self._path(project, f"/deployments/{deployment_id}"),
                           {"status": status})

    def close(self) -> None:
        pass
