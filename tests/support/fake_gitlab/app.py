"""The fake's WSGI application: GitLab REST v4 routes, auth, pagination, faults, call records,
and the `/__fake__/` control API used to seed state and read records over HTTP."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qs, quote, unquote, urlencode

from werkzeug.wrappers import Request, Response

from .state import FakeError, FakeState, fake_sha, not_found, now_iso, split_labels

API = "/api/v4"
P = r"/projects/(?P<project>[^/]+)"
NOTEABLE = P + r"/(?P<kind>issues|merge_requests)/(?P<iid>\d+)"
ROUTES: list[tuple[str, re.Pattern, str]] = []


def route(method: str, pattern: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        ROUTES.append((method, re.compile(pattern + r"/?$"), fn.__name__))
        return fn
    return deco


class Fault:
    """One injected misbehaviour: the next `count` matching calls (None = all) get `status`
    (with `Retry-After` for 429) and/or are delayed by `delay` seconds."""

    def __init__(self, path_re: str = ".*", method: str | None = None, status: int | None = None,
                 count: int | None = 1, retry_after: float | None = None, delay: float = 0.0,
                 body: Any = None) -> None:
        self.path_re, self.method, self.status = re.compile(path_re), method, status
        self.count, self.retry_after, self.delay, self.body = count, retry_after, delay, body

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method.upper() == method)
                and self.path_re.search(path) is not None
                and (self.count is None or self.count > 0))


class FakeGitLabApp:
    def __init__(self, state: FakeState | None = None) -> None:
        self.state = state or FakeState()
        self.calls: list[dict] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._seq = 0

    # -- WSGI entry ------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(request.path)
        raw_path = raw.split("?", 1)[0]
        if "://" in raw_path:  # absolute-form request target
            raw_path = "/" + raw_path.split("://", 1)[1].split("/", 1)[1]
        if raw_path.startswith("/__fake__/"):
            return self._control(request, raw_path)(environ, start_response)
        started = time.monotonic()
        body = self._json_body(request)
        # Recorded on arrival (status None until answered), so a call whose client gave up
        # during an injected delay still shows up.
        with self._lock:
            self._seq += 1
            call = {
                "seq": self._seq, "time": time.time(), "method": request.method,
                "path": raw_path, "query": _flat_query(request.query_string.decode()),
                "json": body, "status": None, "fault": None, "duration": None,
            }
            self.calls.append(call)
        response, fault_name = self._handle(request, raw_path, body)
        with self._lock:
            call.update(status=response.status_code, fault=fault_name,
                        duration=round(time.monotonic() - started, 4))
        return response(environ, start_response)

    @staticmethod
    def _json_body(request: Request) -> Any:
        data = request.get_data(cache=True)
        if not data:
            return None
        if request.mimetype == "application/json":
            try:
                return json.loads(data)
            except ValueError:
                return {"__invalid_json__": data.decode(errors="replace")}
        if request.mimetype == "application/x-www-form-urlencoded":
            return {k: v[0] if len(v) == 1 else v for k, v in parse_qs(data.decode()).items()}
        return None

    def _handle(self, request: Request, raw_path: str, body: Any) -> tuple[Response, str | None]:
        method = request.method
        fault = None
        with self._lock:
            for f in self.faults:
                if f.matches(method, raw_path):
                    if f.count is not None:
                        f.count -= 1
                    fault = f
                    break
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = _num(fault.retry_after)
                    headers["RateLimit-Reset"] = str(int(time.time() + float(fault.retry_after)))
                if fault.status == 429:
                    headers.update({"RateLimit-Limit": "600", "RateLimit-Remaining": "0",
                                    "RateLimit-Observed": "601"})
                default = {429: "Retry later", 500: "500 Internal Server Error",
                           502: "502 Bad Gateway", 503: "503 Service Unavailable"}
                payload = fault.body if fault.body is not None else {
                    "message": default.get(fault.status, f"{fault.status} Error")}
                return _json(payload, fault.status, headers), f"status:{fault.status}"
        if not raw_path.startswith(API + "/"):
            return _json({"error": "404 Not Found"}, 404), None
        path = raw_path[len(API):]
        try:
            user = self.state.user_for_token(
                request.headers.get("PRIVATE-TOKEN")
                or _bearer(request.headers.get("Authorization", "")))
            if user is None:
                raise FakeError(401, "401 Unauthorized")
            for m, rx, name in ROUTES:
                match = rx.match(path)
                if match and m == method:
                    params = {**_flat_query(request.query_string.decode(), arrays=True),
                              **(body if isinstance(body, dict) else {})}
                    ctx = Ctx(self, request, user, params, match.groupdict())
                    with self.state.lock:
                        result = getattr(self, name)(ctx)
                    return result, ("delay" if fault else None)
            if any(rx.match(path) for _, rx, _ in ROUTES):
                raise FakeError(405, "405 Method Not Allowed")
            raise FakeError(404, "404 Not Found", key="error")
        except FakeError as e:
            return _json(e.body, e.status), ("delay" if fault else None)

    # -- control API -----------------------------------------------------------------------
    def _control(self, request: Request, path: str) -> Response:
        try:
            body = self._json_body(request) or {}
            name = path[len("/__fake__/"):].strip("/")
            if name == "health":
                return _json({"ok": True})
            if name == "reset":
                with self._lock:
                    self.calls.clear()
                    self.faults.clear()
                self.state.reset()
                return _json({"ok": True})
            if name == "calls":
                if request.method == "DELETE":
                    with self._lock:
                        self.calls.clear()
                    return _json({"ok": True})
                q = _flat_query(request.query_string.decode())
                return _json(self.find_calls(q.get("method"), q.get("path_re")))
            if name == "faults":
                with self._lock:
                    if request.method == "DELETE":
                        self.faults.clear()
                    else:
                        self.faults.append(Fault(**body))
                return _json({"ok": True, "faults": len(self.faults)})
            if name == "side_effects":
                with self.state.lock:
                    return _json(list(self.state.side_effects))
            if name == "state":
                return _json(self.state.snapshot())
            if name == "seed":
                return _json(self.state.seed(**body))
            if name.startswith("op/"):
                op = name[3:]
                if op not in FakeState.OPS:
                    return _json({"error": f"unknown op {op}"}, 404)
                return _json(getattr(self.state, op)(**body))
            return _json({"error": f"unknown control path {path}"}, 404)
        except FakeError as e:
            return _json(e.body, e.status)
        except (TypeError, ValueError, KeyError) as e:
            return _json({"error": f"{type(e).__name__}: {e}"}, 400)

    def find_calls(self, method: str | None = None, path_re: str | None = None) -> list[dict]:
        rx = re.compile(path_re) if path_re else None
        with self._lock:
            return [dict(c) for c in self.calls
                    if (method is None or c["method"] == method.upper())
                    and (rx is None or rx.search(c["path"]))]

    # -- REST handlers ---------------------------------------------------------------------
    @route("GET", r"/user")
    def get_user(self, c: "Ctx") -> Response:
        u = c.user
        return _json({**u, "bot": True, "is_admin": False, "created_at": "2024-01-01T00:00:00Z",
                      "email": f"{u['username']}@example.com"})

    @route("GET", P)
    def get_project(self, c: "Ctx") -> Response:
        return _json(self.state.view_project(c.project))

    # pipelines
    @route("GET", P + r"/pipelines")
    def list_pipelines(self, c: "Ctx") -> Response:
        items = [x for x in self.state.pipelines.values() if x["project_id"] == c.project["id"]]
        for key in ("ref", "sha", "status", "source"):
            if c.params.get(key):
                items = [x for x in items if x[key] == c.params[key]]
        order = c.params.get("order_by", "id")
        if order not in ("id", "status", "ref", "updated_at", "user_id"):
            raise FakeError(400, "order_by does not have a valid value", key="error")
        keyf = (lambda x: x["user"]["id"]) if order == "user_id" else (lambda x: (x[order], x["id"]))
        items.sort(key=keyf, reverse=c.params.get("sort", "desc") != "asc")
        return self._page(c, [self.state.view_pipeline(x) for x in items])

    @route("GET", P + r"/pipelines/latest")
    def latest_pipeline(self, c: "Ctx") -> Response:
        ref = c.params.get("ref") or c.project["default_branch"]
        items = [x for x in self.state.pipelines.values()
                 if x["project_id"] == c.project["id"] and x["ref"] == ref]
        if not items:
            raise not_found()
        return _json(self.state.view_pipeline(max(items, key=lambda x: x["id"]), full=True))

    @route("GET", P + r"/pipelines/(?P<pipeline_id>\d+)")
    def get_pipeline(self, c: "Ctx") -> Response:
        return _json(self.state.view_pipeline(c.pipeline, full=True))

    @route("POST", P + r"/pipelines/(?P<pipeline_id>\d+)/retry")
    def retry_pipeline(self, c: "Ctx") -> Response:
        pipe = c.pipeline
        for job in self.state._pipeline_jobs(pipe["id"]):
            if job["status"] in ("failed", "canceled"):
                self.state.retry_job(c.project, job, c.user)
        return _json(self.state.view_pipeline(pipe, full=True), 201)

    @route("GET", P + r"/pipelines/(?P<pipeline_id>\d+)/jobs")
    def pipeline_jobs(self, c: "Ctx") -> Response:
        include_retried = str(c.params.get("include_retried", "false")).lower() == "true"
        jobs = self.state._pipeline_jobs(c.pipeline["id"], include_retried)
        return self._page(c, self._scoped(c, jobs))

    @route("GET", P + r"/pipelines/(?P<pipeline_id>\d+)/test_report")
    def test_report(self, c: "Ctx") -> Response:
        rep = c.project["_test_reports"].get(c.pipeline["id"])
        return _json(rep if rep is not None else {
            "total_time": 0, "total_count": 0, "success_count": 0, "failed_count": 0,
            "skipped_count": 0, "error_count": 0, "test_suites": []})

    # jobs
    @route("GET", P + r"/jobs")
    def list_jobs(self, c: "Ctx") -> Response:
        jobs = sorted((j for j in self.state.jobs.values()
                       if j["_project_id"] == c.project["id"]), key=lambda j: -j["id"])
        return self._page(c, self._scoped(c, jobs))

    def _scoped(self, c: "Ctx", jobs: list[dict]) -> list[dict]:
        scope = c.params.get("scope[]", c.params.get("scope"))
        if scope:
            scopes = [scope] if isinstance(scope, str) else list(scope)
            jobs = [j for j in jobs if j["status"] in scopes]
        return [self.state.view_job(j) for j in jobs]

    @route("GET", P + r"/jobs/(?P<job_id>\d+)")
    def get_job(self, c: "Ctx") -> Response:
        return _json(self.state.view_job(c.job))

    @route("POST", P + r"/jobs/(?P<job_id>\d+)/retry")
    def retry_job(self, c: "Ctx") -> Response:
        return _json(self.state.view_job(self.state.retry_job(c.project, c.job, c.user)), 201)

    @route("GET", P + r"/jobs/(?P<job_id>\d+)/trace")
    def job_trace(self, c: "Ctx") -> Response:
        size, chunks, delay = self.state.trace_chunks(c.job)

        def stream():
            for chunk in chunks:
                if delay:
                    time.sleep(delay)
                yield chunk

        resp = Response(stream(), 200, content_type="text/plain; charset=utf-8",
                        direct_passthrough=True)
        resp.headers["Content-Length"] = str(size)
        return resp

    # issues
    @route("GET", P + r"/issues")
    def list_issues(self, c: "Ctx") -> Response:
        items = list(c.project["_issues"].values())
        state = c.params.get("state", "all")
        if state in ("opened", "closed"):
            items = [i for i in items if i["state"] == state]
        items = _label_filter(items, c.params.get("labels"))
        if c.params.get("search"):
            needle = str(c.params["search"]).lower()
            items = [i for i in items if needle in i["title"].lower()
                     or needle in (i["description"] or "").lower()]
        order = c.params.get("order_by", "created_at")
        items.sort(key=lambda i: (i.get(order) or "", i["id"]),
                   reverse=c.params.get("sort", "desc") != "asc")
        return self._page(c, [self.state.view_issue(i) for i in items])

    @route("POST", P + r"/issues")
    def create_issue(self, c: "Ctx") -> Response:
        c.require("title")
        issue = self.state.add_issue(c.project["id"], c.params["title"],
                                     c.params.get("description") or "",
                                     labels=c.params.get("labels"), author_id=c.user["id"])
        self.state.effect(f"{c.project['path_with_namespace']}#{issue['iid']}:issue_created")
        return _json(issue, 201)

    @route("GET", P + r"/issues/(?P<iid>\d+)")
    def get_issue(self, c: "Ctx") -> Response:
        return _json(self.state.view_issue(self.state.noteable(c.project, "issue", c.args["iid"])))

    @route("PUT", P + r"/issues/(?P<iid>\d+)")
    def update_issue(self, c: "Ctx") -> Response:
        obj = self.state.noteable(c.project, "issue", c.args["iid"])
        self._update_noteable(c, "issue", obj)
        return _json(self.state.view_issue(obj))

    def _update_noteable(self, c: "Ctx", kind: str, obj: dict) -> None:
        editable = {"title", "description", "labels", "add_labels", "remove_labels",
                    "state_event", "confidential", "assignee_ids", "target_branch"}
        if not editable & set(c.params):
            raise FakeError(400, "title, description, ... are missing, at least one parameter "
                            "must be provided", key="error")
        ref = self.state.ref_name(c.project, kind, obj["iid"])
        for key in ("title", "description", "confidential", "target_branch"):
            if key in c.params and obj.get(key) != c.params[key]:
                obj[key] = c.params[key]
                self.state.effect(f"{ref}:{key}_updated")
        new = list(obj["labels"])
        if "labels" in c.params:
            new = split_labels(c.params["labels"])
        new += [x for x in split_labels(c.params.get("add_labels")) if x not in new]
        drop = set(split_labels(c.params.get("remove_labels")))
        self.state.change_labels(c.project, kind, obj, [x for x in new if x not in drop], c.user)
        # State changes are resource state events in GitLab, not notes.
        event = c.params.get("state_event")
        if event == "close" and obj["state"] == "opened":
            obj["state"], obj["closed_at"] = "closed", now_iso()
            self.state.effect(f"{ref}:closed")
        elif event == "reopen" and obj["state"] == "closed":
            obj["state"], obj["closed_at"] = "opened", None
            self.state.effect(f"{ref}:reopened")
        obj["updated_at"] = now_iso()

    # merge requests
    @route("GET", P + r"/merge_requests")
    def list_mrs(self, c: "Ctx") -> Response:
        items = list(c.project["_mrs"].values())
        state = c.params.get("state", "all")
        if state != "all":
            items = [m for m in items if m["state"] == state]
        for key in ("source_branch", "target_branch"):
            if c.params.get(key):
                items = [m for m in items if m[key] == c.params[key]]
        items = _label_filter(items, c.params.get("labels"))
        items.sort(key=lambda m: m["id"], reverse=c.params.get("sort", "desc") != "asc")
        return self._page(c, [self.state.view_mr(m) for m in items])

    @route("POST", P + r"/merge_requests")
    def create_mr(self, c: "Ctx") -> Response:
        c.require("source_branch", "target_branch", "title")
        src, dst = c.params["source_branch"], c.params["target_branch"]
        for m in c.project["_mrs"].values():
            if m["state"] == "opened" and m["source_branch"] == src and m["target_branch"] == dst:
                raise FakeError(409, ["Another open merge request already exists for this "
                                      f"source branch: !{m['iid']}"])
        if src not in c.project["_branches"]:
            raise FakeError(400, {"source_branch": ["does not exist"]})
        mr = self.state.add_mr(c.project["id"], c.params["title"], src, dst,
                               description=c.params.get("description") or "",
                               labels=c.params.get("labels"), author_id=c.user["id"])
        self.state.effect(f"{c.project['path_with_namespace']}!{mr['iid']}:mr_created")
        return _json(mr, 201)

    @route("GET", P + r"/merge_requests/(?P<iid>\d+)")
    def get_mr(self, c: "Ctx") -> Response:
        return _json(self.state.view_mr(self.state.noteable(c.project, "mr", c.args["iid"])))

    @route("PUT", P + r"/merge_requests/(?P<iid>\d+)")
    def update_mr(self, c: "Ctx") -> Response:
        obj = self.state.noteable(c.project, "mr", c.args["iid"])
        self._update_noteable(c, "mr", obj)
        return _json(self.state.view_mr(obj))

    @route("GET", P + r"/merge_requests/(?P<iid>\d+)/closes_issues")
    def mr_closes_issues(self, c: "Ctx") -> Response:
        mr = self.state.noteable(c.project, "mr", c.args["iid"])
        return self._page(c, self.state.closes_issues(c.project, mr))

    @route("GET", P + r"/merge_requests/(?P<iid>\d+)/approvals")
    def mr_approvals(self, c: "Ctx") -> Response:
        mr = self.state.noteable(c.project, "mr", c.args["iid"])
        return _json(self.state.view_approvals(c.project, mr))

    # notes
    @route("GET", NOTEABLE + r"/notes")
    def list_notes(self, c: "Ctx") -> Response:
        notes = list(c.noteable["_notes"])
        order = c.params.get("order_by", "created_at")
        if order not in ("created_at", "updated_at"):
            raise FakeError(400, "order_by does not have a valid value", key="error")
        notes.sort(key=lambda n: (n[order], n["id"]), reverse=c.params.get("sort", "desc") != "asc")
        return self._page(c, [self.state.view_note(n) for n in notes])

    @route("GET", NOTEABLE + r"/resource_label_events")
    def list_label_events(self, c: "Ctx") -> Response:
        return self._page(c, list(c.noteable.get("_label_events", [])))

    @route("POST", NOTEABLE + r"/notes")
    def create_note(self, c: "Ctx") -> Response:
        c.require("body")
        note = self.state._create_note(c.project, c.kind, c.noteable, c.params["body"],
                                       c.user["id"])
        return _json(self.state.view_note(note), 201)

    @route("GET", NOTEABLE + r"/notes/(?P<note_id>\d+)")
    def get_note(self, c: "Ctx") -> Response:
        return _json(self.state.view_note(c.note))

    @route("PUT", NOTEABLE + r"/notes/(?P<note_id>\d+)")
    def update_note(self, c: "Ctx") -> Response:
        note = c.note
        if note["author"]["id"] != c.user["id"] or note["system"]:
            raise FakeError(403, "403 Forbidden")
        if "body" not in c.params:
            raise FakeError(400, "body is missing", key="error")
        if c.params["body"] != note["body"]:
            note["body"], note["updated_at"] = c.params["body"], now_iso()
        self.state.effect(f"{self.state.ref_name(c.project, c.kind, c.noteable['iid'])}"
                          f":note_updated:{note['id']}")
        return _json(self.state.view_note(note))

    @route("GET", NOTEABLE + r"/notes/(?P<note_id>\d+)/award_emoji")
    def list_note_emoji(self, c: "Ctx") -> Response:
        return self._page(c, [self.state.view_emoji(e) for e in c.note["_emoji"]])

    @route("POST", NOTEABLE + r"/notes/(?P<note_id>\d+)/award_emoji")
    def award_note_emoji(self, c: "Ctx") -> Response:
        c.require("name")
        note, name = c.note, c.params["name"]
        if any(e["name"] == name and e["user"]["id"] == c.user["id"] for e in note["_emoji"]):
            raise FakeError(404, "404 Award Emoji Name has already been taken")
        ts = now_iso()
        emoji = {"id": self.state._next("emoji"), "name": name,
                 "user": self.state._user_brief(c.user["id"]), "created_at": ts,
                 "updated_at": ts, "awardable_id": note["id"], "awardable_type": "Note"}
        note["_emoji"].append(emoji)
        self.state.effect(f"{self.state.ref_name(c.project, c.kind, c.noteable['iid'])}"
                          f":emoji_awarded:{note['id']}:{name}")
        return _json(emoji, 201)

    # members, freezes, labels
    @route("GET", P + r"/members/all")
    def list_members_all(self, c: "Ctx") -> Response:
        return self._page(c, [self.state.view_member(c.project, u) for u in c.project["_members"]])

    @route("GET", P + r"/members/all/(?P<user_id>\d+)")
    def get_member_all(self, c: "Ctx") -> Response:
        uid = int(c.args["user_id"])
        if uid not in c.project["_members"]:
            raise not_found()
        return _json(self.state.view_member(c.project, uid))

    @route("GET", P + r"/freeze_periods")
    def freeze_periods(self, c: "Ctx") -> Response:
        return self._page(c, list(c.project["_freeze"]))

    @route("GET", P + r"/labels")
    def list_labels(self, c: "Ctx") -> Response:
        return self._page(c, [dict(x) for x in c.project["_labels"].values()])

    @route("POST", P + r"/labels")
    def create_label(self, c: "Ctx") -> Response:
        c.require("name", "color")
        label = self.state.add_label(c.project["id"], c.params["name"], c.params["color"],
                                     c.params.get("description"))
        self.state.effect(f"{c.project['path_with_namespace']}:label_created:{label['name']}")
        return _json(label, 201)

    # repository
    @route("GET", P + r"/repository/branches")
    def list_branches(self, c: "Ctx") -> Response:
        return self._page(c, [self.state.view_branch(c.project, b)
                              for b in sorted(c.project["_branches"])])

    @route("GET", P + r"/repository/branches/(?P<branch>.+)")
    def get_branch(self, c: "Ctx") -> Response:
        name = unquote(c.args["branch"])
        if name not in c.project["_branches"]:
            raise not_found("Branch")
        return _json(self.state.view_branch(c.project, name))

    @route("POST", P + r"/repository/branches")
    def create_branch(self, c: "Ctx") -> Response:
        c.require("branch", "ref")
        name, ref = c.params["branch"], c.params["ref"]
        p = c.project
        if name in p["_branches"]:
            raise FakeError(400, "Branch already exists")
        if ref in p["_branches"]:
            src = p["_branches"][ref]
        elif ref in p["_commits"]:
            src = {"commit": ref, "files": {}}
        else:
            raise FakeError(400, "Invalid reference name: " + ref)
        p["_branches"][name] = {"commit": src["commit"], "files": dict(src["files"])}
        self.state.effect(f"{p['path_with_namespace']}:branch_created:{name}")
        return _json(self.state.view_branch(p, name), 201)

    @route("POST", P + r"/repository/commits")
    def create_commit(self, c: "Ctx") -> Response:
        c.require("branch", "commit_message", "actions")
        p, branch = c.project, c.params["branch"]
        start = c.params.get("start_branch") or c.params.get("start_sha")
        if branch in p["_branches"]:
            files = dict(p["_branches"][branch]["files"])
            parent = p["_branches"][branch]["commit"]
        elif start:
            if start not in p["_branches"]:
                raise FakeError(400, f"Invalid reference name: {start}")
            files = dict(p["_branches"][start]["files"])
            parent = p["_branches"][start]["commit"]
        else:
            raise FakeError(400, "You can only create or edit files when you are on a branch")
        actions = c.params["actions"]
        if not isinstance(actions, list) or not actions:
            raise FakeError(400, "actions is invalid", key="error")
        for a in actions:
            kind, fp = a.get("action"), a.get("file_path")
            if kind not in ("create", "delete", "move", "update", "chmod") or not fp:
                raise FakeError(400, "actions[0][action] does not have a valid value", key="error")
            if kind == "create":
                if fp in files:
                    raise FakeError(400, "A file with this name already exists")
                files[fp] = a.get("content") or ""
            elif kind in ("update", "delete", "chmod"):
                if fp not in files:
                    raise FakeError(400, "A file with this name doesn't exist")
                if kind == "update":
                    files[fp] = a.get("content") or ""
                elif kind == "delete":
                    del files[fp]
            elif kind == "move":
                prev = a.get("previous_path")
                if prev not in files:
                    raise FakeError(400, "A file with this name doesn't exist")
                content = files.pop(prev)
                files[fp] = a.get("content") if a.get("content") is not None else content
        msg = c.params["commit_message"]
        sha = fake_sha(p["id"], branch, parent, msg, time.time_ns())
        ts = now_iso()
        commit = {"id": sha, "short_id": sha[:8], "title": msg.splitlines()[0] if msg else "",
                  "message": msg, "parent_ids": [parent], "created_at": ts,
                  "author_name": c.params.get("author_name") or c.user["name"],
                  "author_email": c.params.get("author_email") or f"{c.user['username']}@example.com",
                  "authored_date": ts, "committer_name": c.user["name"],
                  "committer_email": f"{c.user['username']}@example.com", "committed_date": ts,
                  "trailers": {}, "extended_trailers": {},
                  "web_url": f"{p['web_url']}/-/commit/{sha}",
                  "stats": {"additions": len(actions), "deletions": 0, "total": len(actions)},
                  "status": None, "last_pipeline": None, "project_id": p["id"]}
        p["_commits"][sha] = commit
        p["_branches"][branch] = {"commit": sha, "files": files}
        self.state.effect(f"{p['path_with_namespace']}:commit_created:{branch}")
        return _json(commit, 201)

    # deployments
    @route("GET", P + r"/deployments")
    def list_deployments(self, c: "Ctx") -> Response:
        items = sorted(c.project["_deployments"].values(), key=lambda d: d["id"])
        if c.params.get("environment"):
            items = [d for d in items if d["environment"]["name"] == c.params["environment"]]
        return self._page(c, items)

    @route("POST", P + r"/deployments")
    def create_deployment(self, c: "Ctx") -> Response:
        c.require("environment", "sha", "ref", "tag", "status")
        status = c.params["status"]
        if status not in ("running", "success", "failed", "canceled"):
            raise FakeError(400, "status does not have a valid value", key="error")
        p = c.project
        did = self.state._next("deployment")
        ts = now_iso()
        env = c.params["environment"]
        d = {"id": did, "iid": len(p["_deployments"]) + 1, "ref": c.params["ref"],
             "sha": c.params["sha"], "status": status, "created_at": ts, "updated_at": ts,
             "user": self.state._user_brief(c.user["id"]), "deployable": None,
             "environment": {"id": abs(hash((p["id"], env))) % 100000, "name": env,
                             "external_url": None}}
        p["_deployments"][did] = d
        self.state.effect(f"{p['path_with_namespace']}:deployment_created:{env}:{status}")
        return _json(d, 201)

    @route("GET", P + r"/deployments/(?P<deployment_id>\d+)")
    def get_deployment(self, c: "Ctx") -> Response:
        d = c.project["_deployments"].get(int(c.args["deployment_id"]))
        if d is None:
            raise not_found("Deployment")
        return _json(d)

    @route("PUT", P + r"/deployments/(?P<deployment_id>\d+)")
    def update_deployment(self, c: "Ctx") -> Response:
        c.require("status")
        d = c.project["_deployments"].get(int(c.args["deployment_id"]))
        if d is None:
            raise not_found("Deployment")
        if c.params["status"] not in ("running", "success", "failed", "canceled"):
            raise FakeError(400, "status does not have a valid value", key="error")
        d["status"], d["updated_at"] = c.params["status"], now_iso()
        self.state.effect(f"{c.project['path_with_namespace']}:deployment_updated:"
                          f"{d['id']}:{d['status']}")
        return _json(d)

    # -- pagination --------------------------------------------------------------------------
    def _page(self, c: "Ctx", items: list) -> Response:
        """Offset pagination with GitLab's headers; `Link` carries absolute URLs that keep the
        caller's other query parameters, which is what python-gitlab follows."""
        try:
            page = max(1, int(c.params.get("page", 1)))
            per_page = int(c.params.get("per_page", 20))
        except (TypeError, ValueError):
            raise FakeError(400, "page is invalid", key="error") from None
        per_page = 20 if per_page < 1 else min(per_page, 100)
        total = len(items)
        pages = max(1, -(-total // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        resp = _json(chunk)
        h = resp.headers
        h["X-Page"], h["X-Per-Page"] = str(page), str(per_page)
        h["X-Total"], h["X-Total-Pages"] = str(total), str(pages)
        h["X-Next-Page"] = str(page + 1) if page < pages else ""
        h["X-Prev-Page"] = str(page - 1) if page > 1 else ""
        base = c.request.host_url.rstrip("/") + c.raw_path
        query = {k: v for k, v in _flat_query(c.request.query_string.decode(), arrays=True).items()
                 if k not in ("page", "per_page")}

        def link(n: int) -> str:
            return base + "?" + urlencode({**query, "page": n, "per_page": per_page}, doseq=True)

        links = []
        if page > 1:
            links.append(f'<{link(page - 1)}>; rel="prev"')
        if page < pages:
            links.append(f'<{link(page + 1)}>; rel="next"')
        links.append(f'<{link(1)}>; rel="first"')
        links.append(f'<{link(pages)}>; rel="last"')
        h["Link"] = ", ".join(links)
        return resp


class Ctx:
    """One API request: the caller, merged params (query + JSON body) and lazy lookups that
    raise GitLab's 404s."""

    def __init__(self, app: FakeGitLabApp, request: Request, user: dict, params: dict,
                 args: dict) -> None:
        self.app, self.request, self.user, self.params, self.args = app, request, user, params, args
        self.state = app.state
        self.raw_path = (request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
                         or request.path).split("?", 1)[0]

    @property
    def project(self) -> dict:
        return self.state.project(unquote(self.args["project"]))

    @property
    def kind(self) -> str:
        return "issue" if self.args["kind"] == "issues" else "mr"

    @property
    def noteable(self) -> dict:
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
                raise FakeError(400, f"{n} is missing", key="error")


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


def _flat_query(qs: str, arrays: bool = False) -> dict:
    out: dict[str, Any] = {}
    for k, v in parse_qs(qs, keep_blank_values=True).items():
        out[k] = v if (len(v) > 1 or (arrays and k.endswith("[]"))) else v[0]
    return out


def _bearer(value: str) -> str | None:
    return value[7:] if value.lower().startswith("bearer ") else None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _json(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload, default=str), status,
                    headers=headers or {}, content_type="application/json")


__all__ = ["FakeGitLabApp", "Fault"]
