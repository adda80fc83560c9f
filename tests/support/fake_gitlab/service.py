"""GitLab REST v4 semantics over `FakeState`: routes, parameters, permissions, errors.

`Api.dispatch(method, path, user, params)` answers one API call as GitLab would, with no HTTP:
the WSGI app (`app.py`) wraps it with auth, faults, pagination and JSON, and
`tests/support/recording_gitlab.RecordingGitLab` calls it directly, so both fakes run the same
code for every request. `path` is the raw path after `/api/v4` (URL-encoded project paths kept).

Errors are `FakeError(status, body)`. Lists come back whole (`Result(paginate=True)`); the HTTP
layer pages them. Behaviour that is not obvious cites the GitLab page it follows.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from .ci_lint import lint as ci_lint
from .state import (
    DEVELOPER,
    GUEST,
    MAINTAINER,
    PIPELINE_STATUSES,
    PLANNER,
    REPORTER,
    FakeError,
    FakeState,
    bad_request,
    blob_sha,
    forbidden,
    not_found,
    parse_time,
    split_labels,
)

P = r"/projects/(?P<project>[^/]+)"
NOTEABLE = P + r"/(?P<kind>issues|merge_requests)/(?P<iid>\d+)"
ROUTES: list[tuple[str, re.Pattern, str]] = []

JOB_SCOPES = ("created", "pending", "running", "failed", "success", "canceled", "skipped",
              "waiting_for_resource", "manual", "preparing", "scheduled")


def route(method: str, pattern: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        ROUTES.append((method, re.compile(pattern + r"/?$"), fn.__name__))
        return fn
    return deco


class Result:
    """An answer: JSON `payload` with `status`; `paginate` for list endpoints; `raw` bytes
    chunks (an iterator) with `size` and `content_type` for plain-text endpoints."""

    def __init__(self, payload: Any = None, status: int = 200, paginate: bool = False,
                 raw: Any = None, size: int | None = None, delay: float = 0.0,
                 content_type: str = "application/json") -> None:
        self.payload, self.status, self.paginate = payload, status, paginate
        self.raw, self.size, self.delay, self.content_type = raw, size, delay, content_type


class Call:
    """One request as the handlers see it: the caller, merged params (query + body), the
    path's captures, and lookups that raise GitLab's 404/403 in GitLab's order."""

    def __init__(self, api: Api, user: dict, params: dict, args: dict) -> None:
        self.api, self.state, self.user, self.params, self.args = api, api.state, user, params, args
        self._project: dict | None = None

    @property
    def project(self) -> dict:
        if self._project is None:
            self._project = self.state.visible_project(unquote(self.args["project"]), self.user)
        return self._project

    def need(self, level: int) -> None:
        self.state.need(self.project, self.user, level)

    @property
    def level(self) -> int:
        return self.state.access(self.project, self.user)

    @property
    def kind(self) -> str:
        return "issue" if self.args["kind"] == "issues" else "mr"

    @property
    def noteable(self) -> dict:
        if self.kind == "mr" and not self.state.can_read_mrs(self.project, self.user):
            raise forbidden()
        return self.state.noteable(self.project, self.kind, self.args["iid"])

    @property
    def note(self) -> dict:
        obj = self.noteable
        n = next((n for n in obj["_notes"] if n["id"] == int(self.args["note_id"])), None)
        if n is None:
            raise not_found("Note")
        return n

    @property
    def pipeline(self) -> dict:
        return self.state.pipeline(self.project, self.args["pipeline_id"])

    @property
    def job(self) -> dict:
        return self.state.job(self.project, self.args["job_id"])

    def require(self, *names: str) -> None:
        for n in names:
            if self.params.get(n) in (None, "") and self.params.get(n) is not False:
                raise bad_request(f"{n} is missing", key="error")

    def flag(self, name: str, default: bool = False) -> bool:
        v = self.params.get(name, default)
        return v if isinstance(v, bool) else str(v).lower() in ("true", "1", "yes")

    def time_param(self, name: str) -> float | None:
        v = self.params.get(name)
        if v in (None, ""):
            return None
        try:
            return parse_time(v)
        except (TypeError, ValueError):
            raise bad_request(f"{name} is invalid", key="error") from None

    def choice(self, name: str, allowed: tuple, default: Any = None) -> Any:
        v = self.params.get(name, default)
        if v is not None and v not in allowed:
            raise bad_request(f"{name} does not have a valid value", key="error")
        return v


def _time_window(c: Call, items: list[dict], field: str, after: str, before: str) -> list[dict]:
    lo, hi = c.time_param(after), c.time_param(before)
    if lo is not None:
        items = [x for x in items if parse_time(x[field]) >= lo]
    if hi is not None:
        items = [x for x in items if parse_time(x[field]) <= hi]
    return items


def _label_filter(items: list[dict], labels: Any) -> list[dict]:
    """GitLab's `labels` filter: all listed labels must be present; `None`/`Any` are special."""
    if labels is None or labels == "":
        return items
    wanted = split_labels(labels)
    if wanted == ["None"]:
        return [i for i in items if not i["labels"]]
    if wanted == ["Any"]:
        return [i for i in items if i["labels"]]
    return [i for i in items if all(w in i["labels"] for w in wanted)]


class Api:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def dispatch(self, method: str, path: str, user: dict, params: dict) -> Result:
        """Answer `method path` (path after /api/v4, raw) for `user`; raises FakeError."""
        for m, rx, name in ROUTES:
            match = rx.match(path)
            if match and m == method:
                with self.state.lock:
                    return getattr(self, name)(Call(self, user, params, match.groupdict()))
        if any(rx.match(path) for _, rx, _ in ROUTES):
            raise FakeError(405, "405 Method Not Allowed")
        raise FakeError(404, "404 Not Found", key="error")

    # -- users -------------------------------------------------------------------------------
    @route("GET", r"/user")
    def get_current_user(self, c: Call) -> Result:
        u = self.state.view_user(c.user["id"], full=True)
        return Result({**u, "is_admin": False, "email": f"{u['username']}@example.com"})

    @route("GET", r"/users/(?P<user_id>\d+)")
    def get_user(self, c: Call) -> Result:
        return Result(self.state.view_user(int(c.args["user_id"]), full=True))

    @route("GET", r"/users")
    def list_users(self, c: Call) -> Result:
        # doc/api/users.md#list-users: `username` is an exact, case-insensitive match.
        users = sorted(self.state.users.values(), key=lambda u: -u["id"])
        if c.params.get("username"):
            users = [u for u in users if u["username"].lower() == str(c.params["username"]).lower()]
        if c.params.get("search"):
            q = str(c.params["search"]).lower()
            users = [u for u in users if q in u["username"].lower() or q in u["name"].lower()]
        return Result([self.state._user_brief(u["id"]) for u in users], paginate=True)

    # -- projects ----------------------------------------------------------------------------
    @route("GET", P)
    def get_project(self, c: Call) -> Result:
        return Result(self.state.view_project(c.project, c.user))

    @route("GET", r"/groups/(?P<group>[^/]+)/projects")
    def list_group_projects(self, c: Call) -> Result:
        """doc/api/groups.md#list-projects: the projects the caller can see in the group
        (a full path or id), its subgroups' too with include_subgroups; 404 for no such group."""
        group = unquote(c.args["group"]).strip("/").lower()
        subgroups = c.flag("include_subgroups")
        found, items = False, []
        for proj in self.state.projects.values():
            ns = proj["namespace"]
            full, gid = ns["full_path"].lower(), str(ns["id"])
            inside = full == group or gid == group or (subgroups and full.startswith(group + "/"))
            found = found or full == group or gid == group or full.startswith(group + "/")
            if inside and self.state.can_see(proj, c.user):
                items.append(proj)
        if not found:
            raise not_found("Group")
        if c.params.get("archived") is not None:
            items = [x for x in items if bool(x.get("archived")) == c.flag("archived")]
        items.sort(key=lambda x: x["id"], reverse=c.params.get("sort") == "desc")
        return Result([self.state.view_project(x, c.user) for x in items], paginate=True)

    @route("GET", P + r"/members/all")
    def list_members_all(self, c: Call) -> Result:
        p = c.project
        return Result([self.state.view_member(p, u) for u in p["_members"]], paginate=True)

    @route("GET", P + r"/members/all/(?P<user_id>\d+)")
    def get_member_all(self, c: Call) -> Result:
        uid = int(c.args["user_id"])
        if uid not in c.project["_members"]:
            raise not_found()
        return Result(self.state.view_member(c.project, uid))

    @route("GET", P + r"/freeze_periods")
    def freeze_periods(self, c: Call) -> Result:
        c.need(DEVELOPER)  # doc/api/freeze_periods.md: Developer role or higher
        return Result(list(c.project["_freeze"]), paginate=True)

    # -- pipelines -----------------------------------------------------------------------------
    @route("GET", P + r"/pipelines")
    def list_pipelines(self, c: Call) -> Result:
        """doc/api/pipelines.md#list-project-pipelines."""
        p = c.project
        items = [x for x in self.state.pipelines.values() if x["project_id"] == p["id"]]
        c.choice("status", PIPELINE_STATUSES)
        c.choice("scope", ("running", "pending", "finished", "branches", "tags"))
        order = c.choice("order_by", ("id", "status", "ref", "updated_at", "user_id"), "id")
        sort = c.choice("sort", ("asc", "desc"), "desc")
        for key in ("ref", "sha", "status", "source"):
            if c.params.get(key):
                items = [x for x in items if x[key] == c.params[key]]
        scope = c.params.get("scope")
        if scope in ("running", "pending"):
            items = [x for x in items if x["status"] == scope]
        elif scope == "finished":
            items = [x for x in items if x["status"] in ("success", "failed", "canceled",
                                                          "skipped")]
        elif scope == "tags":
            items = []
        if c.params.get("username"):
            items = [x for x in items if x["user"]["username"] == c.params["username"]]
        items = _time_window(c, items, "updated_at", "updated_after", "updated_before")
        items = _time_window(c, items, "created_at", "created_after", "created_before")
        keyf = ((lambda x: (x["user"]["id"], x["id"])) if order == "user_id"
                else (lambda x: (x[order], x["id"])))
        items.sort(key=keyf, reverse=sort != "asc")
        return Result([self.state.view_pipeline(x) for x in items], paginate=True)

    @route("GET", P + r"/pipelines/latest")
    def latest_pipeline(self, c: Call) -> Result:
        ref = c.params.get("ref") or c.project["default_branch"]
        items = [x for x in self.state.pipelines.values()
                 if x["project_id"] == c.project["id"] and x["ref"] == ref]
        if not items:
            raise not_found()
        return Result(self.state.view_pipeline(max(items, key=lambda x: x["id"]), full=True))

    @route("GET", P + r"/pipelines/(?P<pipeline_id>\d+)")
    def get_pipeline(self, c: Call) -> Result:
        return Result(self.state.view_pipeline(c.pipeline, full=True))

    @route("POST", P + r"/pipelines/(?P<pipeline_id>\d+)/retry")
    def retry_pipeline(self, c: Call) -> Result:
        pipe = c.pipeline
        c.need(DEVELOPER)  # update_pipeline
        for job in self.state._pipeline_jobs(pipe["id"]):
            if job["status"] in ("failed", "canceled"):
                self.state.retry_job(c.project, job, c.user)
        self.state.effect(f"{c.project['path_with_namespace']}:pipeline_retried:{pipe['id']}")
        return Result(self.state.view_pipeline(pipe, full=True), 201)

    @route("POST", P + r"/pipelines/(?P<pipeline_id>\d+)/cancel")
    def cancel_pipeline(self, c: Call) -> Result:
        pipe = c.pipeline
        c.need(DEVELOPER)  # cancel_pipeline
        for job in self.state._pipeline_jobs(pipe["id"]):
            self.state.cancel_job(c.project, job, c.user)
        return Result(self.state.view_pipeline(pipe, full=True), 201)

    @route("GET", P + r"/pipelines/(?P<pipeline_id>\d+)/jobs")
    def pipeline_jobs(self, c: Call) -> Result:
        jobs = self.state._pipeline_jobs(c.pipeline["id"], c.flag("include_retried"))
        return Result(self._scoped(c, jobs), paginate=True)

    @route("GET", P + r"/pipelines/(?P<pipeline_id>\d+)/test_report")
    def test_report(self, c: Call) -> Result:
        rep = c.project["_test_reports"].get(c.pipeline["id"])
        return Result(rep if rep is not None else {
            "total_time": 0, "total_count": 0, "success_count": 0, "failed_count": 0,
            "skipped_count": 0, "error_count": 0, "test_suites": []})

    # -- jobs --------------------------------------------------------------------------------
    @route("GET", P + r"/jobs")
    def list_jobs(self, c: Call) -> Result:
        """doc/api/jobs.md#list-project-jobs: every job (retried ones too), newest id first."""
        jobs = sorted((j for j in self.state.jobs.values()
                       if j["_project_id"] == c.project["id"]), key=lambda j: -j["id"])
        return Result(self._scoped(c, jobs), paginate=True)

    def _scoped(self, c: Call, jobs: list[dict]) -> list[dict]:
        scope = c.params.get("scope[]", c.params.get("scope"))
        if scope:
            scopes = [scope] if isinstance(scope, str) else list(scope)
            if any(s not in JOB_SCOPES for s in scopes):
                raise bad_request("scope does not have a valid value", key="error")
            jobs = [j for j in jobs if j["status"] in scopes]
        return [self.state.view_job(j) for j in jobs]

    @route("GET", P + r"/jobs/(?P<job_id>\d+)")
    def get_job(self, c: Call) -> Result:
        return Result(self.state.view_job(c.job))

    @route("POST", P + r"/jobs/(?P<job_id>\d+)/retry")
    def retry_job(self, c: Call) -> Result:
        # lib/api/ci/jobs.rb: authorize_update_builds! before the job is even looked up.
        c.need(DEVELOPER)
        job = c.job
        return Result(self.state.view_job(self.state.retry_job(c.project, job, c.user)), 201)

    @route("POST", P + r"/jobs/(?P<job_id>\d+)/cancel")
    def cancel_job(self, c: Call) -> Result:
        c.need(DEVELOPER)
        job = c.job
        return Result(self.state.view_job(self.state.cancel_job(c.project, job, c.user)), 201)

    @route("GET", P + r"/jobs/(?P<job_id>\d+)/trace")
    def job_trace(self, c: Call) -> Result:
        size, chunks, delay = self.state.trace_chunks(c.job)
        return Result(raw=chunks, size=size, delay=delay,
                      content_type="text/plain; charset=utf-8")

    # -- issues ------------------------------------------------------------------------------
    def _filter_issuables(self, c: Call, items: list[dict], orders: tuple) -> list[dict]:
        items = _label_filter(items, c.params.get("labels"))
        if c.params.get("search"):
            needle = str(c.params["search"]).lower()
            items = [i for i in items if needle in i["title"].lower()
                     or needle in (i["description"] or "").lower()]
        if c.params.get("author_id"):
            items = [i for i in items if str(i["author"]["id"]) == str(c.params["author_id"])]
        iids = c.params.get("iids[]")
        if iids:
            wanted = {int(x) for x in ([iids] if isinstance(iids, str) else iids)}
            items = [i for i in items if i["iid"] in wanted]
        items = _time_window(c, items, "updated_at", "updated_after", "updated_before")
        items = _time_window(c, items, "created_at", "created_after", "created_before")
        order = c.choice("order_by", orders, "created_at")
        sort = c.choice("sort", ("asc", "desc"), "desc")
        items.sort(key=lambda i: (i.get(order) or "", i["id"]), reverse=sort != "asc")
        return items

    @route("GET", P + r"/issues")
    def list_issues(self, c: Call) -> Result:
        items = list(c.project["_issues"].values())
        state = c.choice("state", ("opened", "closed", "all"), "all")
        if state != "all":
            items = [i for i in items if i["state"] == state]
        items = self._filter_issuables(c, items, ("created_at", "updated_at", "title",
                                                  "due_date", "priority", "relative_position",
                                                  "label_priority", "milestone_due",
                                                  "popularity", "weight"))
        return Result([self.state.view_issue(i) for i in items], paginate=True)

    @route("POST", P + r"/issues")
    def create_issue(self, c: Call) -> Result:
        p = c.project
        if p["visibility"] == "private":
            c.need(GUEST)
        c.require("title")
        # Guests may set labels when they create an issue (doc/user/permissions.md, footnote).
        issue = self.state.add_issue(p["id"], c.params["title"], c.params.get("description") or "",
                                     labels=c.params.get("labels"), author_id=c.user["id"])
        self.state.effect(f"{p['path_with_namespace']}#{issue['iid']}:issue_created")
        return Result(issue, 201)

    @route("GET", P + r"/issues/(?P<iid>\d+)")
    def get_issue(self, c: Call) -> Result:
        return Result(self.state.view_issue(self.state.noteable(c.project, "issue", c.args["iid"])))

    @route("PUT", P + r"/issues/(?P<iid>\d+)")
    def update_issue(self, c: Call) -> Result:
        obj = self.state.noteable(c.project, "issue", c.args["iid"])
        # update_issue: the author, or Planner/Reporter and up; labels are issue metadata,
        # which only Planner/Reporter and up may change (silently dropped for others).
        is_author = obj["author"]["id"] == c.user["id"]
        if not (is_author or c.level >= PLANNER):
            raise forbidden()
        self._update_noteable(c, "issue", obj, metadata=c.level >= PLANNER)
        return Result(self.state.view_issue(obj))

    def _update_noteable(self, c: Call, kind: str, obj: dict, metadata: bool) -> None:
        editable = {"title", "description", "labels", "add_labels", "remove_labels",
                    "state_event", "confidential", "assignee_ids", "target_branch",
                    "discussion_locked"}
        if not editable & set(c.params):
            raise bad_request("title, description, ... are missing, at least one parameter "
                              "must be provided", key="error")
        event = c.choice("state_event", ("close", "reopen"))
        ref = self.state.ref_name(c.project, kind, obj["iid"])
        changed = False
        for key in ("title", "description", "confidential", "target_branch"):
            if key in c.params and obj.get(key) != c.params[key]:
                obj[key] = c.params[key]
                changed = True
                self.state.effect(f"{ref}:{key}_updated")
        if metadata and ({"labels", "add_labels", "remove_labels"} & set(c.params)):
            new = list(obj["labels"])
            selection: list[str] = []
            if "labels" in c.params:
                new = split_labels(c.params["labels"])
                selection = list(new)
            adds = split_labels(c.params.get("add_labels"))
            new += [x for x in adds if x not in new]
            drop = set(split_labels(c.params.get("remove_labels")))
            self.state.change_labels(c.project, kind, obj, [x for x in new if x not in drop],
                                     c.user, selection=adds + selection)
        # State changes are resource state events in GitLab, not notes.
        if event == "close" and obj["state"] == "opened":
            obj["state"], obj["closed_at"] = "closed", self.state.now()
            obj["closed_by"] = self.state._user_brief(c.user["id"])
            changed = True
            self.state.effect(f"{ref}:closed")
        elif event == "reopen" and obj["state"] == "closed":
            obj["state"], obj["closed_at"], obj["closed_by"] = "opened", None, None
            changed = True
            self.state.effect(f"{ref}:reopened")
        if changed:
            obj["updated_at"] = self.state.now()

    # -- merge requests ------------------------------------------------------------------------
    @route("GET", P + r"/merge_requests")
    def list_mrs(self, c: Call) -> Result:
        if not self.state.can_read_mrs(c.project, c.user):
            raise forbidden()
        items = list(c.project["_mrs"].values())
        state = c.choice("state", ("opened", "closed", "locked", "merged", "all"), "all")
        if state != "all":
            items = [m for m in items if m["state"] == state]
        for key in ("source_branch", "target_branch"):
            if c.params.get(key):
                items = [m for m in items if m[key] == c.params[key]]
        items = self._filter_issuables(c, items, ("created_at", "updated_at", "title",
                                                  "merged_at", "label_priority",
                                                  "milestone_due", "popularity", "priority"))
        return Result([self.state.view_mr(m) for m in items], paginate=True)

    @route("POST", P + r"/merge_requests")
    def create_mr(self, c: Call) -> Result:
        p = c.project
        c.require("source_branch", "target_branch", "title")
        c.need(DEVELOPER)  # "Merge requests: Create" (doc/user/permissions.md)
        src, dst = c.params["source_branch"], c.params["target_branch"]
        for m in p["_mrs"].values():
            if (m["state"] == "opened" and m["source_branch"] == src and m["target_branch"] == dst
                    and m["source_project_id"] == p["id"]):
                raise FakeError(409, ["Another open merge request already exists for this "
                                      f"source branch: !{m['iid']}"])
        if src not in p["_branches"]:
            raise FakeError(400, {"source_branch": ["does not exist"]})
        if dst not in p["_branches"]:
            raise FakeError(400, {"target_branch": ["does not exist"]})
        mr = self.state.add_mr(p["id"], c.params["title"], src, dst,
                               description=c.params.get("description") or "",
                               labels=c.params.get("labels"), author_id=c.user["id"])
        self.state.effect(f"{p['path_with_namespace']}!{mr['iid']}:mr_created")
        return Result(mr, 201)

    @route("GET", P + r"/merge_requests/(?P<iid>\d+)")
    def get_mr(self, c: Call) -> Result:
        c.args["kind"] = "merge_requests"
        return Result(self.state.view_mr(c.noteable))

    @route("PUT", P + r"/merge_requests/(?P<iid>\d+)")
    def update_mr(self, c: Call) -> Result:
        c.args["kind"] = "merge_requests"
        obj = c.noteable
        # update_merge_request: Developer and up, or the author; MR labels need Developer
        # ("Merge requests: Add labels"; Planners have Guest access to MRs).
        if not (obj["author"]["id"] == c.user["id"] or c.level >= DEVELOPER):
            raise forbidden()
        if c.params.get("state_event") == "reopen" and obj["state"] == "merged":
            raise forbidden()
        self._update_noteable(c, "mr", obj, metadata=c.level >= DEVELOPER)
        return Result(self.state.view_mr(obj))

    @route("GET", P + r"/merge_requests/(?P<iid>\d+)/closes_issues")
    def mr_closes_issues(self, c: Call) -> Result:
        c.args["kind"] = "merge_requests"
        return Result(self.state.closes_issues(c.project, c.noteable), paginate=True)

    @route("GET", P + r"/merge_requests/(?P<iid>\d+)/approvals")
    def mr_approvals(self, c: Call) -> Result:
        c.args["kind"] = "merge_requests"
        return Result(self.state.view_approvals(c.project, c.noteable, c.user))

    @route("POST", P + r"/merge_requests/(?P<iid>\d+)/approve")
    def approve_mr(self, c: Call) -> Result:
        c.args["kind"] = "merge_requests"
        mr = c.noteable
        if c.params.get("sha") and c.params["sha"] != mr["sha"]:
            raise FakeError(409, "SHA does not match HEAD of source branch")
        self.state.approve(c.project, mr, c.user)
        return Result(self.state.view_approvals(c.project, mr, c.user), 201)

    @route("POST", P + r"/merge_requests/(?P<iid>\d+)/unapprove")
    def unapprove_mr(self, c: Call) -> Result:
        c.args["kind"] = "merge_requests"
        mr = c.noteable
        self.state.unapprove(c.project, mr, c.user)
        return Result(self.state.view_approvals(c.project, mr, c.user), 201)

    # -- notes, label events, emoji ------------------------------------------------------------
    @route("GET", NOTEABLE + r"/notes")
    def list_notes(self, c: Call) -> Result:
        notes = list(c.noteable["_notes"])
        order = c.choice("order_by", ("created_at", "updated_at"), "created_at")
        sort = c.choice("sort", ("asc", "desc"), "desc")
        notes.sort(key=lambda n: (n[order], n["id"]), reverse=sort != "asc")
        return Result([self.state.view_note(n) for n in notes], paginate=True)

    @route("GET", NOTEABLE + r"/resource_label_events")
    def list_label_events(self, c: Call) -> Result:
        return Result([dict(e) for e in c.noteable["_label_events"]], paginate=True)

    @route("POST", NOTEABLE + r"/notes")
    def create_note(self, c: Call) -> Result:
        obj = c.noteable
        # Anyone who can see the noteable may comment ("Leave comments": Guest).
        if c.project["visibility"] == "private":
            c.need(GUEST)
        c.require("body")
        note = self.state._create_note(c.project, c.kind, obj, c.params["body"], c.user["id"])
        return Result(self.state.view_note(note), 201)

    @route("GET", NOTEABLE + r"/notes/(?P<note_id>\d+)")
    def get_note(self, c: Call) -> Result:
        return Result(self.state.view_note(c.note))

    @route("PUT", NOTEABLE + r"/notes/(?P<note_id>\d+)")
    def update_note(self, c: Call) -> Result:
        obj, note = c.noteable, c.note
        if "body" not in c.params:
            raise bad_request("body is missing", key="error")
        self.state.update_note(c.project, c.kind, obj, note, c.params["body"], c.user)
        return Result(self.state.view_note(note))

    @route("GET", NOTEABLE + r"/notes/(?P<note_id>\d+)/award_emoji")
    def list_note_emoji(self, c: Call) -> Result:
        return Result([self.state.view_emoji(e) for e in c.note["_emoji"]], paginate=True)

    @route("POST", NOTEABLE + r"/notes/(?P<note_id>\d+)/award_emoji")
    def award_note_emoji(self, c: Call) -> Result:
        note = c.note
        c.require("name")
        name = c.params["name"]
        if any(e["name"] == name and e["user"]["id"] == c.user["id"] for e in note["_emoji"]):
            raise FakeError(404, "404 Award Emoji Name has already been taken")
        ts = self.state.now()
        emoji = {"id": self.state._next("emoji"), "name": name,
                 "user": self.state._user_brief(c.user["id"]), "created_at": ts,
                 "updated_at": ts, "awardable_id": note["id"], "awardable_type": "Note"}
        note["_emoji"].append(emoji)
        self.state.effect(f"{self.state.ref_name(c.project, c.kind, c.noteable['iid'])}"
                          f":emoji_awarded:{note['id']}:{name}")
        return Result(emoji, 201)

    # -- labels --------------------------------------------------------------------------------
    @route("GET", P + r"/labels")
    def list_labels(self, c: Call) -> Result:
        p = c.project
        return Result([self.state.view_label(p, x) for x in p["_labels"].values()], paginate=True)

    @route("POST", P + r"/labels")
    def create_label(self, c: Call) -> Result:
        c.require("name", "color")
        c.need(PLANNER)  # "Manage labels": Planner, Reporter and up
        label = self.state.add_label(c.project["id"], c.params["name"], c.params["color"],
                                     c.params.get("description"))
        self.state.effect(f"{c.project['path_with_namespace']}:label_created:{label['name']}")
        return Result(label, 201)

    # -- repository ----------------------------------------------------------------------------
    def _code(self, c: Call) -> dict:
        p = c.project
        if not self.state.can_read_code(p, c.user):
            raise forbidden()
        return p

    def _ref(self, c: Call, p: dict, ref: str | None, what: str = "Commit") -> str:
        sha = self.state.resolve_ref(p, ref or p["default_branch"])
        if sha is None:
            raise not_found(what)
        return sha

    @route("GET", P + r"/repository/commits/(?P<sha>[^/]+)")
    def get_commit(self, c: Call) -> Result:
        """doc/api/commits.md#get-a-single-commit: `sha` is a commit hash or the name of a
        branch (URL-encoded when it holds a slash)."""
        p = self._code(c)
        sha = unquote(c.args["sha"])
        found = self.state.resolve_ref(p, sha)
        if found is None:
            raise not_found("Commit")
        return Result(self.state.view_commit(p, found))

    @route("GET", P + r"/repository/compare")
    def compare(self, c: Call) -> Result:
        """Commits reachable from `to` and not from `from` (first-parent walk: the fake's
        history is linear), oldest first, as GitLab lists them."""
        c.require("from", "to")
        p = self._code(c)
        base = self.state.resolve_ref(p, str(c.params["from"]))
        head = self.state.resolve_ref(p, str(c.params["to"]))
        if base is None or head is None:
            raise not_found("Ref")
        commits, cur = [], head
        while cur is not None and cur != base and cur in p["_commits"]:
            commits.append(self.state.view_commit(p, cur))
            parents = p["_commits"][cur]["parent_ids"]
            cur = parents[0] if parents else None
        return Result({"commit": commits[0] if commits else None, "commits": commits[::-1],
                       "diffs": [], "compare_timeout": False, "compare_same_ref": base == head,
                       "web_url": f"{p['web_url']}/-/compare/{base}...{head}"})

    @route("GET", P + r"/repository/branches")
    def list_branches(self, c: Call) -> Result:
        p = self._code(c)
        names = sorted(p["_branches"])
        if c.params.get("search"):
            names = [n for n in names if str(c.params["search"]) in n]
        return Result([self.state.view_branch(p, b, c.user) for b in names], paginate=True)

    @route("GET", P + r"/repository/branches/(?P<branch>.+)")
    def get_branch(self, c: Call) -> Result:
        p = self._code(c)
        name = unquote(c.args["branch"])
        if name not in p["_branches"]:
            raise not_found("Branch")
        return Result(self.state.view_branch(p, name, c.user))

    @route("POST", P + r"/repository/branches")
    def create_branch(self, c: Call) -> Result:
        c.require("branch", "ref")
        p = c.project
        c.need(DEVELOPER)  # push_code
        name, ref = c.params["branch"], c.params["ref"]
        if name in p["_branches"]:
            raise bad_request("Branch already exists")
        sha = self.state.resolve_ref(p, ref)
        if sha is None:
            raise bad_request("Invalid reference name: " + ref)
        p["_branches"][name] = {"commit": sha, "protected": False,
                                "push_access_level": MAINTAINER, "merge_access_level": MAINTAINER}
        self.state.effect(f"{p['path_with_namespace']}:branch_created:{name}")
        return Result(self.state.view_branch(p, name, c.user), 201)

    @route("POST", P + r"/repository/commits")
    def create_commit(self, c: Call) -> Result:
        c.require("branch", "commit_message", "actions")
        p, branch = c.project, c.params["branch"]
        c.need(DEVELOPER)
        start = c.params.get("start_branch") or c.params.get("start_sha")
        if branch in p["_branches"]:
            parent = p["_branches"][branch]["commit"]
        elif start:
            parent = self.state.resolve_ref(p, start)
            if parent is None:
                raise bad_request(f"Invalid reference name: {start}")
        else:
            raise bad_request("You can only create or edit files when you are on a branch")
        # lib/api/commits.rb: authorize_push_to_branch! (protected branches need their push
        # access level; the default branch is protected for Maintainers by default).
        if not self.state.can_push(p, c.user, branch):
            raise forbidden("You are not allowed to push into this branch")
        created = branch not in p["_branches"]
        if created:
            p["_branches"][branch] = {"commit": parent, "protected": False,
                                      "push_access_level": MAINTAINER,
                                      "merge_access_level": MAINTAINER}
        try:
            commit = self.state.commit_files(p, branch, c.params["actions"],
                                             c.params["commit_message"], c.user, parent=parent,
                                             author_name=c.params.get("author_name"),
                                             author_email=c.params.get("author_email"))
        except FakeError:
            if created:
                del p["_branches"][branch]
            raise
        return Result(commit, 201)

    def _file(self, c: Call) -> tuple[dict, str, str, str]:
        p = self._code(c)
        path = unquote(c.args["file_path"])
        if c.args.get("_needs_ref"):
            c.require("ref")
        ref = c.params.get("ref") or p["default_branch"]
        sha = self._ref(c, p, ref)
        files = self.state.files_at(p, sha)
        if path not in files:
            raise not_found("File")
        return p, path, ref, sha

    @route("GET", P + r"/repository/files/(?P<file_path>[^/]+)/raw")
    def get_file_raw(self, c: Call) -> Result:
        p, path, _ref, sha = self._file(c)
        data = self.state.files_at(p, sha)[path].encode()
        return Result(raw=iter([data]), size=len(data), content_type="text/plain; charset=utf-8")

    @route("GET", P + r"/repository/files/(?P<file_path>[^/]+)")
    def get_file(self, c: Call) -> Result:
        """doc/api/repository_files.md#get-file-from-repository (`ref` is required)."""
        c.args["_needs_ref"] = "1"
        p, path, ref, sha = self._file(c)
        content = self.state.files_at(p, sha)[path]
        data = content.encode()
        return Result({"file_name": path.rsplit("/", 1)[-1], "file_path": path,
                       "size": len(data), "encoding": "base64",
                       "content": base64.b64encode(data).decode(),
                       "content_sha256": hashlib.sha256(data).hexdigest(), "ref": ref,
                       "blob_id": blob_sha(data), "commit_id": sha,
                       "last_commit_id": self.state.last_commit_for(p, sha, path),
                       "execute_filemode": False})

    @route("GET", P + r"/repository/tree")
    def repository_tree(self, c: Call) -> Result:
        """doc/api/repositories.md#list-repository-tree: entries under `path` (recursive or
        one level), folders as `tree` with mode 040000, files as `blob` 100644."""
        p = self._code(c)
        sha = self._ref(c, p, c.params.get("ref"), "Tree")
        base = str(c.params.get("path") or "").strip("/")
        files = self.state.files_at(p, sha)
        recursive = c.flag("recursive")
        entries: dict[str, dict] = {}
        prefix = base + "/" if base else ""
        for fp, content in files.items():
            if prefix and not fp.startswith(prefix):
                continue
            rest = fp[len(prefix):]
            parts = rest.split("/")
            for depth in range(1, len(parts) + 1):
                if not recursive and depth > 1:
                    break
                sub = prefix + "/".join(parts[:depth])
                is_file = depth == len(parts)
                entries.setdefault(sub, {
                    "id": blob_sha(content) if is_file else hashlib.sha1(sub.encode()).hexdigest(),
                    "name": parts[depth - 1], "type": "blob" if is_file else "tree",
                    "path": sub, "mode": "100644" if is_file else "040000"})
        if base and not entries:
            raise not_found("Tree")
        items = sorted(entries.values(), key=lambda e: (e["type"] != "tree", e["path"]))
        return Result(items, paginate=True)

    # -- CI lint -------------------------------------------------------------------------------
    @route("POST", P + r"/ci/lint")
    def lint_content(self, c: Call) -> Result:
        """doc/api/lint.md#validate-sample-cicd-configuration; lib/api/lint.rb authorizes
        :create_pipeline (Developer)."""
        p = c.project
        if "content" not in c.params or c.params["content"] is None:
            raise bad_request("content is missing", key="error")
        c.need(DEVELOPER)
        ref = c.params.get("ref") if c.flag("dry_run") else None
        sha = self.state.resolve_ref(p, ref or p["default_branch"]) or \
            p["_branches"][p["default_branch"]]["commit"]
        out = ci_lint(str(c.params["content"]), self.state.files_at(p, sha), p, sha,
                      include_jobs=c.flag("include_jobs"))
        return Result(out)

    @route("GET", P + r"/ci/lint")
    def lint_project(self, c: Call) -> Result:
        p = self._code(c)
        sha = self._ref(c, p, c.params.get("content_ref") or c.params.get("sha"))
        files = self.state.files_at(p, sha)
        out = ci_lint(files.get(".gitlab-ci.yml", ""), files, p, sha,
                      include_jobs=c.flag("include_jobs"))
        return Result(out)

    # -- snippets ------------------------------------------------------------------------------
    @route("POST", P + r"/snippets")
    def create_snippet(self, c: Call) -> Result:
        """doc/api/project_snippets.md#create-new-snippet: `title`, `visibility` and either
        `files` [{file_path, content}] or the legacy `file_name` + `content`. Reporter+."""
        p = c.project
        c.need(REPORTER)
        c.require("title")
        visibility = c.choice("visibility", ("private", "internal", "public"))
        if visibility is None:
            raise bad_request("visibility is missing", key="error")
        files = c.params.get("files")
        if files and c.params.get("content"):
            raise bad_request("content, files are mutually exclusive", key="error")
        if not files and c.params.get("content") is None:
            raise bad_request("content, files are missing, exactly one parameter must be "
                              "provided", key="error")
        if not files:
            files = [{"file_path": c.params.get("file_name") or "snippetfile1.txt",
                      "content": c.params["content"]}]
        for n, f in enumerate(files):
            if not isinstance(f, dict) or not f.get("file_path"):
                raise bad_request(f"files[{n}][file_path] is missing", key="error")
            if f.get("content") in (None, ""):
                raise bad_request(f"files[{n}][content] is missing", key="error")
        sid = self.state._next("snippet")
        ts = self.state.now()
        web = f"{p['web_url']}/-/snippets/{sid}"
        snippet = {
            "id": sid, "title": c.params["title"], "description": c.params.get("description"),
            "visibility": visibility, "author": self.state._user_brief(c.user["id"]),
            "created_at": ts, "updated_at": ts, "project_id": p["id"], "web_url": web,
            "raw_url": f"{web}/raw", "file_name": files[0]["file_path"],
            "files": [{"path": f["file_path"], "raw_url": f"{web}/raw/main/{f['file_path']}"}
                      for f in files],
            "imported": False, "imported_from": "none",
            "ssh_url_to_repo": f"git@fake:{p['path_with_namespace']}.snippets/{sid}.git",
            "http_url_to_repo": f"{p['web_url']}.snippets/{sid}.git",
            "_contents": {f["file_path"]: f["content"] for f in files},
        }
        p["_snippets"][sid] = snippet
        self.state.effect(f"{p['path_with_namespace']}:snippet_created:{sid}")
        return Result(self.state.public(snippet), 201)

    def _snippet(self, c: Call) -> dict:
        s = c.project["_snippets"].get(int(c.args["snippet_id"]))
        if s is None or (s["visibility"] == "private" and c.level < GUEST
                         and s["author"]["id"] != c.user["id"]):
            raise not_found("Snippet")
        return s

    @route("GET", P + r"/snippets/(?P<snippet_id>\d+)")
    def get_snippet(self, c: Call) -> Result:
        return Result(self.state.public(self._snippet(c)))

    @route("GET", P + r"/snippets/(?P<snippet_id>\d+)/raw")
    def get_snippet_raw(self, c: Call) -> Result:
        s = self._snippet(c)
        data = str(next(iter(s["_contents"].values()))).encode()
        return Result(raw=iter([data]), size=len(data), content_type="text/plain; charset=utf-8")

    # -- deployments ---------------------------------------------------------------------------
    @route("GET", P + r"/deployments")
    def list_deployments(self, c: Call) -> Result:
        items = sorted(c.project["_deployments"].values(), key=lambda d: d["id"])
        if c.params.get("environment"):
            items = [d for d in items if d["environment"]["name"] == c.params["environment"]]
        return Result(items, paginate=True)

    @route("POST", P + r"/deployments")
    def create_deployment(self, c: Call) -> Result:
        c.require("environment", "sha", "ref", "tag", "status")
        c.need(DEVELOPER)  # create_deployment
        status = c.choice("status", ("running", "success", "failed", "canceled"))
        p = c.project
        did = self.state._next("deployment")
        ts = self.state.now()
        env = c.params["environment"]
        d = {"id": did, "iid": len(p["_deployments"]) + 1, "ref": c.params["ref"],
             "sha": c.params["sha"], "status": status, "created_at": ts, "updated_at": ts,
             "user": self.state._user_brief(c.user["id"]), "deployable": None,
             "environment": {"id": int(hashlib.sha1(f"{p['id']}/{env}".encode()).hexdigest()[:6],
                                       16), "name": env, "external_url": None}}
        p["_deployments"][did] = d
        self.state.effect(f"{p['path_with_namespace']}:deployment_created:{env}:{status}")
        return Result(d, 201)

    @route("GET", P + r"/deployments/(?P<deployment_id>\d+)")
    def get_deployment(self, c: Call) -> Result:
        d = c.project["_deployments"].get(int(c.args["deployment_id"]))
        if d is None:
            raise not_found("Deployment")
        return Result(d)

    @route("PUT", P + r"/deployments/(?P<deployment_id>\d+)")
    def update_deployment(self, c: Call) -> Result:
        c.require("status")
        d = c.project["_deployments"].get(int(c.args["deployment_id"]))
        if d is None:
            raise not_found("Deployment")
        c.need(DEVELOPER)  # update_deployment
        c.choice("status", ("running", "success", "failed", "canceled"))
        d["status"], d["updated_at"] = c.params["status"], self.state.now()
        self.state.effect(f"{c.project['path_with_namespace']}:deployment_updated:"
                          f"{d['id']}:{d['status']}")
        return Result(d)


__all__ = ["JOB_SCOPES", "ROUTES", "Api", "Result"]
