"""In-memory GitLab state: the data model behind the fake REST API and its seeding operations.

Everything is plain dicts guarded by one lock, so the state can be seeded from JSON over the
control API (subprocess mode) exactly as from Python (thread mode). Internal records keep a few
private fields (leading underscore) that the REST views never expose, because GitLab's own
responses do not carry them and our code must not start relying on them.

The REST semantics (routes, permissions, parameters, errors) live in `service.py`, which both
the HTTP app and `tests/support/recording_gitlab.py` drive, so the two fakes share one model.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

# GitLab access levels (doc/api/members.md#roles).
GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 15, 20, 30, 40, 50
NO_ACCESS = 0

BOT_TOKEN = "fake-bot-token"
BOT_USER = {"id": 1, "username": "devops-bot", "name": "DevOps Bot"}

# Job statuses GitLab lets you retry (Ci::Build#retryable?: complete and not archived).
RETRYABLE = {"success", "failed", "canceled"}
ACTIVE = {"created", "waiting_for_resource", "preparing", "pending", "running", "scheduled", "manual"}
CANCELABLE = {"created", "waiting_for_resource", "preparing", "pending", "running", "scheduled"}
PIPELINE_STATUSES = ("created", "waiting_for_resource", "preparing", "pending", "running",
                     "success", "failed", "canceled", "skipped", "manual", "scheduled")

# GitLab's default issue closing pattern (doc/administration/issue_closing_pattern.md),
# same-project `#123` references only. Both fakes use this one grammar.
CLOSING_RE = re.compile(
    r"(?i)\b(?:clos(?:e[sd]?|ing)|fix(?:e[sd]|ing)?|resolv(?:e[sd]?|ing)|implement(?:s|ed|ing)?)"
    r":? +(?:issues? +)?((?:#\d+(?:\s*(?:,|and)\s*)?)+)"
)
DRAFT_RE = re.compile(r"(?i)^\s*(\[draft\]|\(draft\)|draft:|draft\s-\s|draft\s)")


class FakeError(Exception):
    """An API error: HTTP status plus GitLab's body (`{"message": ...}` or `{"error": ...}`)."""

    def __init__(self, status: int, message: Any, key: str = "message") -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.body = {key: message}


def not_found(what: str | None = None) -> FakeError:
    return FakeError(404, f"404 {what} Not Found" if what else "404 Not found")


def forbidden(reason: str | None = None) -> FakeError:
    """Grape's `forbidden!`: `{"message": "403 Forbidden"}` or `"403 Forbidden - reason"`."""
    return FakeError(403, "403 Forbidden" + (f" - {reason}" if reason else ""))


def bad_request(message: str, key: str = "message") -> FakeError:
    return FakeError(400, message, key=key)


def iso(ts: float) -> str:
    return (datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"))


def parse_time(value: Any) -> float:
    """ISO 8601 (`2024-01-01T00:00:00Z`, with offset, or a date) to epoch seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def now_iso() -> str:
    return iso(time.time())


def fake_sha(*parts: Any) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def blob_sha(content: str | bytes) -> str:
    """Git's blob id: sha1 of `blob <size>\\0<data>`, as GitLab reports `blob_id`."""
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def split_labels(value: Any) -> list[str]:
    """GitLab takes labels as a comma-separated string or an array."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(x).strip() for x in items if str(x).strip()]


def label_scope(name: str) -> str | None:
    """The scope of a scoped label: everything before the LAST `::` (doc/user/project/labels.md
    #scoped-labels, "nested scopes"); None for an ordinary label."""
    if "::" not in name:
        return None
    scope = name.rpartition("::")[0]
    return scope or None


class FakeState:
    """The whole fake GitLab. Ops whose names are in OPS can be called over the control API."""

    OPS = (
        "add_user", "add_project", "add_member", "add_pipeline", "add_job", "set_job_status",
        "set_pipeline_status", "set_trace", "set_test_report", "add_issue", "add_mr", "approve_mr",
        "unapprove_mr", "add_note", "edit_note", "add_freeze_period", "add_label", "add_branch",
        "protect_branch", "push_commit", "set_project", "set_time", "advance_time", "seed",
        "snapshot", "relabel_as",
    )

    def __init__(self, base_url: str = "http://127.0.0.1") -> None:
        self.lock = threading.RLock()
        self.base_url = base_url
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.users: dict[int, dict] = {}
            self.tokens: dict[str, int] = {}
            self.projects: dict[int, dict] = {}
            self.jobs: dict[int, dict] = {}  # job ids are global in GitLab
            self.pipelines: dict[int, dict] = {}  # so are pipeline ids
            self.notes: dict[int, dict] = {}
            self.side_effects: list[str] = []
            self._offset = 0.0
            self._last = 0.0
            # GitLab's ids come from sequences: a new object's id is above every existing one
            # (a retried job's id is above the job's), also when tests seed explicit ids.
            self._ids = {k: 1000 for k in
                         ("project", "pipeline", "job", "issue", "mr", "note", "label", "emoji",
                          "deployment", "freeze", "user", "label_event", "snippet")}
            self.add_user(BOT_USER["username"], id=BOT_USER["id"], name=BOT_USER["name"],
                          token=BOT_TOKEN, bot=True)

    def _next(self, kind: str) -> int:
        value = self._ids[kind]
        self._ids[kind] = value + 1
        return value

    def _given(self, kind: str, value: Any) -> int:
        """An explicit id from a test: later ids are allocated above it."""
        value = int(value)
        self._ids[kind] = max(self._ids[kind], value + 1)
        return value

    def effect(self, record: str) -> None:
        self.side_effects.append(record)

    # -- the clock: strictly increasing, movable by tests ----------------------------------
    def clock(self) -> float:
        with self.lock:
            t = max(time.time() + self._offset, self._last + 0.001)
            self._last = t
            return t

    def now(self) -> str:
        return iso(self.clock())

    def set_time(self, now: str) -> dict:
        """Make the fake's clock read `now` (ISO 8601) from here on, e.g. to seed history."""
        with self.lock:
            target = parse_time(now)
            self._offset = target - time.time()
            self._last = target - 0.001
            return {"now": iso(target)}

    def advance_time(self, seconds: float) -> dict:
        with self.lock:
            self._offset += float(seconds)
            return {"now": iso(time.time() + self._offset)}

    # -- lookups ---------------------------------------------------------------------------
    def project(self, ref: Any) -> dict:
        """By numeric id or full path (already URL-decoded)."""
        with self.lock:
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
                p = self.projects.get(int(ref))
            else:
                p = next((p for p in self.projects.values()
                          if p["path_with_namespace"].lower() == str(ref).lower()), None)
            if p is None:
                raise not_found("Project")
            return p

    def user(self, user_id: int) -> dict:
        u = self.users.get(int(user_id))
        if u is None:
            raise not_found("User")
        return u

    def user_for_token(self, token: str | None) -> dict | None:
        uid = self.tokens.get(token or "")
        return self.users.get(uid) if uid is not None else None

    def ensure_user(self, user_id: int, username: str | None = None) -> dict:
        if int(user_id) not in self.users:
            self.add_user(username or f"user{user_id}", id=int(user_id))
        return self.users[int(user_id)]

    def job(self, project: dict, job_id: Any) -> dict:
        j = self.jobs.get(int(job_id))
        if j is None or j["_project_id"] != project["id"]:
            raise not_found("Job")
        return j

    def pipeline(self, project: dict, pipeline_id: Any) -> dict:
        p = self.pipelines.get(int(pipeline_id))
        if p is None or p["project_id"] != project["id"]:
            raise not_found()
        return p

    def noteable(self, project: dict, kind: str, iid: Any) -> dict:
        coll = project["_issues"] if kind == "issue" else project["_mrs"]
        obj = coll.get(int(iid))
        if obj is None:
            raise not_found("Issue" if kind == "issue" else "Merge Request")
        return obj

    def ref_name(self, project: dict, kind: str, iid: int) -> str:
        """Prow-style side-effect prefix: `group/proj#5` for issues, `group/proj!5` for MRs."""
        return f"{project['path_with_namespace']}{'#' if kind == 'issue' else '!'}{iid}"

    # -- permissions (doc/user/permissions.md) ---------------------------------------------
    def access(self, p: dict, user: dict | None) -> int:
        if user is None:
            return NO_ACCESS
        return int(p["_members"].get(int(user["id"]), NO_ACCESS))

    def can_see(self, p: dict, user: dict | None) -> bool:
        """Private projects are visible to members only; internal ones to any signed-in user;
        public ones to everyone (doc/user/public_access.md)."""
        if p["visibility"] == "public":
            return True
        if p["visibility"] == "internal":
            return user is not None
        return self.access(p, user) >= GUEST

    def visible_project(self, ref: Any, user: dict | None) -> dict:
        """The project, or GitLab's 404 when the user may not see it (it hides private
        projects from non-members rather than answering 403)."""
        p = self.project(ref)
        if not self.can_see(p, user):
            raise not_found("Project")
        return p

    def need(self, p: dict, user: dict | None, level: int) -> None:
        if self.access(p, user) < level:
            raise forbidden()

    def can_read_code(self, p: dict, user: dict | None) -> bool:
        # Guests cannot read the repository of a private project; Planners and up can.
        return p["visibility"] != "private" or self.access(p, user) >= PLANNER

    def can_read_mrs(self, p: dict, user: dict | None) -> bool:
        # "View a merge request": Guests only on public and internal projects.
        return p["visibility"] != "private" or self.access(p, user) >= PLANNER

    def can_push(self, p: dict, user: dict | None, branch: str) -> bool:
        level = self.access(p, user)
        if level < DEVELOPER:
            return False
        b = p["_branches"].get(branch)
        if b is not None and b["protected"]:
            return level >= b["push_access_level"]
        return True

    # -- seeding ops -----------------------------------------------------------------------
    def add_user(self, username: str, id: int | None = None, name: str | None = None,
                 token: str | None = None, bot: bool = False, state: str = "active") -> dict:
        with self.lock:
            uid = self._given("user", id) if id is not None else self._next("user")
            self.users[uid] = {
                "id": uid, "username": username, "name": name or username, "state": state,
                "locked": False, "avatar_url": None,
                "web_url": f"{self.base_url}/{username}", "created_at": self.now(),
                "bot": bool(bot),
            }
            if token:
                self.tokens[token] = uid
            return self.view_user(uid)

    def add_project(self, path: str, id: int | None = None, default_branch: str = "main",
                    members: dict | None = None, files: dict | None = None,
                    tier: str = "free", visibility: str = "private",
                    bot_access: int | None = MAINTAINER, reset_approvals_on_push: bool = True,
                    forked_from: Any = None) -> dict:
        """A project. The bot (user 1) becomes a member with `bot_access` (default Maintainer;
        None: not a member) unless `members` names it. `tier` "premium" turns on scoped labels,
        approval rules and approval resets (doc/user/project/labels.md#scoped-labels,
        doc/user/project/merge_requests/approvals/settings.md)."""
        if tier not in ("free", "premium"):
            raise bad_request(f"tier must be free or premium, not {tier!r}", key="error")
        if visibility not in ("private", "internal", "public"):
            raise bad_request("visibility does not have a valid value", key="error")
        with self.lock:
            pid = self._given("project", id) if id is not None else self._next("project")
            namespace, _, name = path.rpartition("/")
            ts = self.now()
            p = {
                "id": pid, "description": None, "name": name, "path": name,
                "path_with_namespace": path, "name_with_namespace": path.replace("/", " / "),
                "namespace": {"id": pid + 100000, "name": namespace, "path": namespace,
                              "full_path": namespace, "kind": "group"},
                "default_branch": default_branch, "visibility": visibility,
                "web_url": f"{self.base_url}/{path}",
                "http_url_to_repo": f"{self.base_url}/{path}.git", "created_at": ts,
                "last_activity_at": ts, "archived": False, "empty_repo": False,
                "forked_from_project": None,
                # CI/CD settings: the job timeout in seconds (GitLab's default 1 h) and the
                # configuration path (empty: .gitlab-ci.yml); shown to Maintainers and up.
                "build_timeout": 3600, "ci_config_path": None,
                # private
                "_tier": tier, "_reset_approvals_on_push": bool(reset_approvals_on_push),
                "_members": {}, "_issues": {}, "_mrs": {}, "_labels": {}, "_branches": {},
                "_commits": {}, "_deployments": {}, "_freeze": [], "_test_reports": {},
                "_snippets": {},
            }
            self.projects[pid] = p
            if forked_from is not None:
                up = self.project(forked_from)
                p["forked_from_project"] = {k: up[k] for k in (
                    "id", "name", "path", "path_with_namespace", "web_url")}
            sha = fake_sha(path, "initial")
            p["_commits"][sha] = {"id": sha, "short_id": sha[:8], "title": "Initial commit",
                                  "message": "Initial commit", "parent_ids": [],
                                  "created_at": ts, "author_name": "Initial", "author_email":
                                  "initial@example.com", "authored_date": ts,
                                  "committer_name": "Initial",
                                  "committer_email": "initial@example.com",
                                  "committed_date": ts, "trailers": {}, "extended_trailers": {},
                                  "web_url": f"{p['web_url']}/-/commit/{sha}",
                                  "_files": dict(files or {})}
            # The default branch is protected by default: only Maintainers push to it
            # (doc/user/project/repository/branches/default.md#protect-initial-default-branches).
            p["_branches"][default_branch] = {"commit": sha, "protected": True,
                                              "push_access_level": MAINTAINER,
                                              "merge_access_level": MAINTAINER}
            members = {int(k): int(v) for k, v in (members or {}).items()}
            if BOT_USER["id"] not in members and bot_access:
                members[BOT_USER["id"]] = int(bot_access)
            for uid, level in members.items():
                self.add_member(pid, uid, level)
            return self.view_project(p)

    def set_project(self, project: Any, **settings: Any) -> dict:
        """Change `tier`, `visibility`, `reset_approvals_on_push`, `default_branch`,
        `build_timeout` (seconds), `ci_config_path`."""
        with self.lock:
            p = self.project(project)
            for key, value in settings.items():
                if key in ("tier", "reset_approvals_on_push"):
                    p[f"_{key}"] = value
                elif key in ("visibility", "default_branch", "description", "build_timeout",
                             "ci_config_path"):
                    p[key] = value
                else:
                    raise bad_request(f"unknown project setting {key}", key="error")
            return self.view_project(p)

    def add_member(self, project: Any, user_id: int, access_level: int) -> dict:
        with self.lock:
            p = self.project(project)
            self.ensure_user(int(user_id))
            p["_members"][int(user_id)] = int(access_level)
            return self.view_member(p, int(user_id))

    def add_pipeline(self, project: Any, ref: str | None = None, sha: str | None = None,
                     status: str = "failed", source: str = "push", jobs: Iterable[dict] = (),
                     id: int | None = None, user_id: int | None = None,
                     created_at: str | None = None, updated_at: str | None = None,
                     started_at: str | None = None, finished_at: str | None = None,
                     commit_message: str | None = None) -> dict:
        """Create a pipeline, optionally with jobs (dicts of add_job's arguments). Timestamps
        default to the fake's clock; pass them to seed history for backtests. A `sha` the
        repository does not have yet becomes a commit (with `commit_message`), as GitLab only
        runs pipelines for commits it has."""
        jobs = list(jobs)
        with self.lock:
            p = self.project(project)
            ref = ref or p["default_branch"]
            branch = p["_branches"].get(ref)
            sha = sha or (branch["commit"] if branch else fake_sha(p["id"], ref))
            if sha not in p["_commits"]:
                parent = branch["commit"] if branch else None
                ts0 = created_at or self.now()
                message = commit_message or f"Commit {sha[:8]}"
                p["_commits"][sha] = {
                    "id": sha, "short_id": sha[:8], "title": message.splitlines()[0],
                    "message": message, "parent_ids": [parent] if parent else [],
                    "created_at": ts0, "author_name": "Dev", "author_email": "dev@example.com",
                    "authored_date": ts0, "committer_name": "Dev",
                    "committer_email": "dev@example.com", "committed_date": ts0,
                    "trailers": {}, "extended_trailers": {},
                    "web_url": f"{p['web_url']}/-/commit/{sha}",
                    "_files": dict(p["_commits"][parent]["_files"]) if parent in p["_commits"] else {}}
            pid = self._given("pipeline", id) if id is not None else self._next("pipeline")
            ts = created_at or self.now()
            done = status not in ACTIVE
            pipe = {
                "id": pid, "iid": len([x for x in self.pipelines.values()
                                       if x["project_id"] == p["id"]]) + 1,
                "project_id": p["id"], "sha": sha, "ref": ref, "status": status,
                "source": source, "created_at": ts, "updated_at": updated_at or finished_at or ts,
                "web_url": f"{p['web_url']}/-/pipelines/{pid}",
                "before_sha": "0" * 40, "tag": False, "yaml_errors": None,
                "user": self._user_brief(user_id or BOT_USER["id"]),
                "started_at": started_at or (None if status in ("created", "pending") else ts),
                "finished_at": finished_at or (ts if done else None),
                "committed_at": None, "queued_duration": None, "coverage": None,
                "name": None, "archived": False,
                "_explicit_status": True, "_timestamps_seeded": bool(updated_at or finished_at),
            }
            self.pipelines[pid] = pipe
            for spec in jobs:
                self.add_job(p["id"], pid, **spec)
            # The caller's status wins at creation; later job changes recompute it.
            pipe["_explicit_status"] = not jobs
            return {"pipeline": self.view_pipeline(pipe, full=True),
                    "jobs": [self.view_job(j) for j in self._pipeline_jobs(pid)]}

    def add_job(self, project: Any, pipeline_id: int, name: str, stage: str = "test",
                status: str = "failed", failure_reason: str | None = None,
                allow_failure: bool = False, trace: str | bytes | None = None,
                id: int | None = None, user_id: int | None = None,
                created_at: str | None = None, started_at: str | None = None,
                finished_at: str | None = None, duration: float | None = None) -> dict:
        with self.lock:
            p = self.project(project)
            pipe = self.pipeline(p, pipeline_id)
            jid = self._given("job", id) if id is not None else self._next("job")
            ts = created_at or pipe["created_at"]
            if status == "failed" and failure_reason is None:
                failure_reason = "script_failure"
            if started_at is None and status not in ("created", "pending", "manual",
                                                     "scheduled", "skipped"):
                started_at = ts
            if finished_at is None and status not in ACTIVE:
                finished_at = self.now() if created_at is None else ts
                if duration is not None and started_at:
                    finished_at = iso(parse_time(started_at) + float(duration))
            job = {
                "id": jid, "name": name, "stage": stage, "status": status,
                "failure_reason": failure_reason, "allow_failure": bool(allow_failure),
                "ref": pipe["ref"], "tag": False, "coverage": None, "archived": False,
                "created_at": ts, "started_at": started_at, "finished_at": finished_at,
                "erased_at": None, "artifacts_expire_at": None,
                "user": self._user_brief(user_id or BOT_USER["id"]),
                "commit": {"id": pipe["sha"], "short_id": pipe["sha"][:8], "title": "commit"},
                "runner": None, "runner_manager": None, "artifacts": [], "tag_list": [],
                "web_url": f"{p['web_url']}/-/jobs/{jid}",
                "_project_id": p["id"], "_pipeline_id": pipe["id"], "_retried": False,
                "_trace": {"text": trace or ""},
            }
            self.jobs[jid] = job
            return self.view_job(job)

    def set_job_status(self, job_id: int, status: str, failure_reason: str | None = None) -> dict:
        """Move a job (e.g. a retried one) to a new status; the pipeline status follows."""
        with self.lock:
            job = self.jobs.get(int(job_id))
            if job is None:
                raise not_found("Job")
            self._move_job(job, status, failure_reason)
            return self.view_job(job)

    def _move_job(self, job: dict, status: str, failure_reason: str | None = None) -> None:
        job["status"] = status
        ts = self.now()
        if status not in {"created", "pending", "manual", "scheduled"} and not job["started_at"]:
            job["started_at"] = ts
        job["finished_at"] = None if status in ACTIVE else ts
        job["failure_reason"] = (failure_reason or "script_failure") if status == "failed" else None
        pipe = self.pipelines[job["_pipeline_id"]]
        pipe["_explicit_status"] = False
        self._recompute(pipe)

    def set_pipeline_status(self, pipeline_id: int, status: str) -> dict:
        with self.lock:
            pipe = self.pipelines.get(int(pipeline_id))
            if pipe is None:
                raise not_found()
            pipe["status"], pipe["updated_at"] = status, self.now()
            pipe["finished_at"] = None if status in ACTIVE else pipe["updated_at"]
            pipe["_explicit_status"] = True
            return self.view_pipeline(pipe, full=True)

    def set_trace(self, job_id: int, text: str | None = None, size: int | None = None,
                  line: str = "log line: nothing to see here\n", tail: str = "",
                  chunk_size: int = 64 * 1024, chunk_delay: float = 0.0) -> dict:
        """Set a job's log: literal `text` (str or bytes), or a generated one of `size` bytes
        (repeated `line`, ending with `tail`) that is streamed without ever being held in
        memory; `chunk_delay` sleeps between chunks to make it slow."""
        with self.lock:
            job = self.jobs.get(int(job_id))
            if job is None:
                raise not_found("Job")
            job["_trace"] = {"text": text, "size": size, "line": line, "tail": tail,
                             "chunk_size": int(chunk_size), "chunk_delay": float(chunk_delay)}
            return {"job_id": job["id"], "size": self.trace_size(job)}

    def set_test_report(self, project: Any, pipeline_id: int, report: dict) -> dict:
        with self.lock:
            p = self.project(project)
            self.pipeline(p, pipeline_id)
            p["_test_reports"][int(pipeline_id)] = report
            return report

    def add_issue(self, project: Any, title: str, description: str = "",
                  labels: Any = (), state: str = "opened", author_id: int | None = None,
                  iid: int | None = None, assignee_ids: Iterable[int] = (),
                  created_at: str | None = None, updated_at: str | None = None) -> dict:
        with self.lock:
            p = self.project(project)
            iid = int(iid) if iid is not None else max(p["_issues"], default=0) + 1
            ts = created_at or self.now()
            labels = self._scoped_filter(p, [], split_labels(labels))
            for name in labels:
                self._ensure_label(p, name)
            issue = {
                "id": self._next("issue"), "iid": iid, "project_id": p["id"], "title": title,
                "description": description, "state": state, "labels": labels,
                "author": self._user_brief(author_id or BOT_USER["id"]),
                "assignees": [self._user_brief(u) for u in assignee_ids], "assignee": None,
                "milestone": None, "confidential": False, "discussion_locked": None,
                "created_at": ts, "updated_at": updated_at or ts,
                "closed_at": ts if state == "closed" else None, "closed_by": None,
                "user_notes_count": 0, "upvotes": 0, "downvotes": 0, "due_date": None,
                "web_url": f"{p['web_url']}/-/issues/{iid}", "type": "ISSUE",
                "issue_type": "issue",
                "references": {"short": f"#{iid}", "relative": f"#{iid}",
                               "full": f"{p['path_with_namespace']}#{iid}"},
                "_notes": [], "_label_events": [], "_kind": "issue",
            }
            p["_issues"][iid] = issue
            return self.view_issue(issue)

    def add_mr(self, project: Any, title: str, source_branch: str, target_branch: str | None = None,
               description: str = "", labels: Any = (), state: str = "opened",
               author_id: int | None = None, iid: int | None = None,
               closes_issues: Iterable[int] | None = None, approvals_required: int = 0,
               approved_by: Iterable[int] = (), sha: str | None = None,
               source_project: Any = None, created_at: str | None = None,
               updated_at: str | None = None) -> dict:
        """A merge request. `source_project` (id or path) makes it a fork's MR: the source
        branch lives there. `approvals_required` counts on Premium only (approval rules are a
        Premium feature); `approved_by` seeds approvals on any tier."""
        if state not in ("opened", "closed", "merged", "locked"):
            raise bad_request("state does not have a valid value", key="error")
        with self.lock:
            p = self.project(project)
            src = self.project(source_project) if source_project is not None else p
            iid = int(iid) if iid is not None else max(p["_mrs"], default=0) + 1
            ts = created_at or self.now()
            labels = self._scoped_filter(p, [], split_labels(labels))
            for name in labels:
                self._ensure_label(p, name)
            branch = src["_branches"].get(source_branch)
            mr = {
                "id": self._next("mr"), "iid": iid, "project_id": p["id"], "title": title,
                "description": description, "state": state, "labels": labels,
                "source_branch": source_branch,
                "target_branch": target_branch or p["default_branch"],
                "source_project_id": src["id"], "target_project_id": p["id"],
                "author": self._user_brief(author_id or BOT_USER["id"]),
                "assignees": [], "assignee": None, "reviewers": [], "milestone": None,
                "merge_when_pipeline_succeeds": False,
                "merge_status": "can_be_merged",
                "sha": sha or (branch["commit"] if branch else fake_sha(src["id"], source_branch)),
                "merge_commit_sha": None, "squash_commit_sha": None, "squash": False,
                "created_at": ts, "updated_at": updated_at or ts,
                "merged_by": None, "merge_user": None,
                "merged_at": ts if state == "merged" else None, "closed_by": None,
                "closed_at": ts if state == "closed" else None, "user_notes_count": 0,
                "upvotes": 0, "downvotes": 0, "discussion_locked": None,
                "should_remove_source_branch": None, "force_remove_source_branch": False,
                "has_conflicts": False, "blocking_discussions_resolved": True,
                "web_url": f"{p['web_url']}/-/merge_requests/{iid}",
                "reference": f"!{iid}",
                "references": {"short": f"!{iid}", "relative": f"!{iid}",
                               "full": f"{p['path_with_namespace']}!{iid}"},
                "_notes": [], "_label_events": [], "_kind": "mr",
                "_closes": None if closes_issues is None else [int(i) for i in closes_issues],
                "_approvals_required": int(approvals_required),
                "_approved_by": [],
            }
            p["_mrs"][iid] = mr
            for uid in approved_by:
                self.ensure_user(int(uid))
                mr["_approved_by"].append({"user_id": int(uid), "at": ts})
            return self.view_mr(mr)

    def approve_mr(self, project: Any, iid: int, user_id: int) -> dict:
        """`user_id` approves (as GitLab's approve endpoint: Developer or more, once)."""
        with self.lock:
            p = self.project(project)
            mr = self.noteable(p, "mr", iid)
            user = self.ensure_user(int(user_id))
            self.approve(p, mr, user)
            return self.view_approvals(p, mr, user)

    def approve(self, p: dict, mr: dict, user: dict) -> None:
        # POST .../approve (doc/api/merge_request_approvals.md#approve-merge-request): a user who
        # cannot approve, or already did, gets 401 Unauthorized.
        if self.access(p, user) < DEVELOPER or any(a["user_id"] == user["id"]
                                                  for a in mr["_approved_by"]):
            raise FakeError(401, "401 Unauthorized")
        mr["_approved_by"].append({"user_id": user["id"], "at": self.now()})
        mr["updated_at"] = self.now()
        self.effect(f"{self.ref_name(p, 'mr', mr['iid'])}:approved:{user['username']}")

    def unapprove_mr(self, project: Any, iid: int, user_id: int) -> dict:
        with self.lock:
            p = self.project(project)
            mr = self.noteable(p, "mr", iid)
            user = self.ensure_user(int(user_id))
            self.unapprove(p, mr, user)
            return self.view_approvals(p, mr, user)

    def unapprove(self, p: dict, mr: dict, user: dict) -> None:
        if not any(a["user_id"] == user["id"] for a in mr["_approved_by"]):
            raise not_found()
        mr["_approved_by"] = [a for a in mr["_approved_by"] if a["user_id"] != user["id"]]
        mr["updated_at"] = self.now()
        self.effect(f"{self.ref_name(p, 'mr', mr['iid'])}:unapproved:{user['username']}")

    def add_note(self, project: Any, kind: str, iid: int, body: str, author_id: int | None = None,
                 system: bool = False, created_at: str | None = None) -> dict:
        with self.lock:
            p = self.project(project)
            obj = self.noteable(p, kind, iid)
            if author_id is not None:
                self.ensure_user(int(author_id))
            return self.view_note(self._create_note(p, kind, obj, body, author_id or BOT_USER["id"],
                                                    system=system, created_at=created_at))

    def edit_note(self, project: Any, kind: str, iid: int, note_id: int, body: str,
                  user_id: int | None = None) -> dict:
        """A person edits a note (by default its author), with GitLab's rules: the author or a
        Maintainer may, system notes never; `updated_at` moves."""
        with self.lock:
            p = self.project(project)
            obj = self.noteable(p, kind, iid)
            note = next((n for n in obj["_notes"] if n["id"] == int(note_id)), None)
            if note is None:
                raise not_found("Note")
            user = self.ensure_user(int(user_id if user_id is not None else note["author"]["id"]))
            self.update_note(p, kind, obj, note, body, user)
            return self.view_note(note)

    def update_note(self, p: dict, kind: str, obj: dict, note: dict, body: str,
                    user: dict) -> None:
        # NotePolicy: the author has admin_note; ProjectPolicy grants it to Maintainers too
        # ("Edit comments (posted by any user)", doc/user/permissions.md). System notes are
        # not editable.
        if note["system"] or not (note["author"]["id"] == user["id"]
                                  or self.access(p, user) >= MAINTAINER):
            raise forbidden()
        if body != note["body"]:
            note["body"], note["updated_at"] = body, self.now()
            note["last_edited_at"] = note["updated_at"]
            note["last_edited_by"] = self._user_brief(user["id"])
            obj["updated_at"] = note["updated_at"]
        self.effect(f"{self.ref_name(p, kind, obj['iid'])}:note_updated:{note['id']}")

    def add_freeze_period(self, project: Any, freeze_start: str, freeze_end: str,
                          cron_timezone: str = "UTC") -> dict:
        with self.lock:
            p = self.project(project)
            ts = self.now()
            fp = {"id": self._next("freeze"), "freeze_start": freeze_start,
                  "freeze_end": freeze_end, "cron_timezone": cron_timezone,
                  "created_at": ts, "updated_at": ts}
            p["_freeze"].append(fp)
            return fp

    def add_label(self, project: Any, name: str, color: str = "#6699cc",
                  description: str | None = None) -> dict:
        with self.lock:
            p = self.project(project)
            if name in p["_labels"]:
                raise FakeError(409, "Label already exists")
            return self.view_label(p, self._ensure_label(p, name, color, description))

    def add_branch(self, project: Any, name: str, ref: str | None = None,
                   files: dict | None = None, protected: bool = False,
                   push_access_level: int = MAINTAINER) -> dict:
        """A branch from `ref` (default branch by default); `files` adds a commit on it."""
        with self.lock:
            p = self.project(project)
            src = self.resolve_ref(p, ref or p["default_branch"])
            if src is None:
                raise bad_request(f"Invalid reference name: {ref}")
            p["_branches"][name] = {"commit": src, "protected": bool(protected),
                                    "push_access_level": int(push_access_level),
                                    "merge_access_level": MAINTAINER}
            if files:
                self.commit_files(p, name, [{"action": "update" if f in self.files_at(p, src)
                                             else "create", "file_path": f, "content": c}
                                            for f, c in files.items()],
                                  f"Add {', '.join(files)}", self.users[BOT_USER["id"]],
                                  record=False)
            return self.view_branch(p, name)

    def protect_branch(self, project: Any, name: str, push_access_level: int = MAINTAINER,
                       merge_access_level: int = MAINTAINER, protected: bool = True) -> dict:
        with self.lock:
            p = self.project(project)
            b = p["_branches"].get(name)
            if b is None:
                raise not_found("Branch")
            b.update(protected=bool(protected), push_access_level=int(push_access_level),
                     merge_access_level=int(merge_access_level))
            return self.view_branch(p, name)

    def push_commit(self, project: Any, branch: str, files: dict | None = None,
                    message: str = "Update files", user_id: int | None = None,
                    actions: list | None = None, start_branch: str | None = None,
                    delete: Iterable[str] = ()) -> dict:
        """Someone pushes a commit (not through the API: no permission check): `files`
        {path: content} are created or updated, `delete` paths removed. The branch head and
        the `sha` of MRs from it move; on Premium, approvals are reset when the project says so."""
        with self.lock:
            p = self.project(project)
            user = self.ensure_user(int(user_id or BOT_USER["id"]))
            if branch not in p["_branches"]:
                base = start_branch or p["default_branch"]
                if base not in p["_branches"]:
                    raise bad_request(f"Invalid reference name: {base}")
                head = p["_branches"][base]["commit"]
                p["_branches"][branch] = {"commit": head, "protected": False,
                                          "push_access_level": MAINTAINER,
                                          "merge_access_level": MAINTAINER}
            current = self.files_at(p, p["_branches"][branch]["commit"])
            acts = list(actions or [])
            acts += [{"action": "update" if f in current else "create", "file_path": f,
                      "content": c} for f, c in (files or {}).items()]
            acts += [{"action": "delete", "file_path": f} for f in delete]
            return self.commit_files(p, branch, acts, message, user)

    def relabel_as(self, project: Any, kind: str, iid: int, user_id: int,
                   add: Iterable[str] = (), remove: Iterable[str] = ()) -> dict:
        """A person changes labels in GitLab's UI: the same rules as the API (scoped labels
        on Premium), recorded as their resource label events."""
        with self.lock:
            p = self.project(project)
            obj = self.noteable(p, kind, iid)
            user = self.ensure_user(int(user_id))
            add, drop = list(add), set(remove)
            new = [x for x in obj["labels"] if x not in drop] + \
                [x for x in add if x not in obj["labels"]]
            self.change_labels(p, kind, obj, new, user, selection=add)
            return self.view_issue(obj) if kind == "issue" else self.view_mr(obj)

    def seed(self, users: Iterable[dict] = (), projects: Iterable[dict] = ()) -> dict:
        """Bulk seed from JSON: each project dict holds add_project's arguments plus lists
        `pipelines` (with nested `jobs`), `issues`, `mrs`, `notes` ({kind, iid, body, ...}),
        `labels`, `freeze_periods`, `branches`, `test_reports` ({pipeline_id: report})."""
        with self.lock:
            for u in users:
                self.add_user(**u)
            out = []
            for spec in projects:
                spec = dict(spec)
                nested = {k: spec.pop(k, None) or [] for k in
                          ("pipelines", "issues", "mrs", "notes", "labels", "freeze_periods",
                           "branches")}
                reports = spec.pop("test_reports", None) or {}
                proj = self.add_project(**spec)
                pid = proj["id"]
                for lab in nested["labels"]:
                    self.add_label(pid, **lab)
                for br in nested["branches"]:
                    self.add_branch(pid, **br)
                for pl in nested["pipelines"]:
                    self.add_pipeline(pid, **pl)
                for pl_id, rep in reports.items():
                    self.set_test_report(pid, int(pl_id), rep)
                for iss in nested["issues"]:
                    self.add_issue(pid, **iss)
                for mr in nested["mrs"]:
                    self.add_mr(pid, **mr)
                for note in nested["notes"]:
                    self.add_note(pid, **note)
                for fp in nested["freeze_periods"]:
                    self.add_freeze_period(pid, **fp)
                out.append(proj)
            return {"projects": out}

    def snapshot(self) -> dict:
        """A JSON view of the state, for assertions in subprocess mode."""
        with self.lock:
            projects = []
            for p in self.projects.values():
                projects.append({
                    **self.view_project(p),
                    "tier": p["_tier"],
                    "members": {str(k): v for k, v in p["_members"].items()},
                    "issues": [self.view_issue(i) for i in p["_issues"].values()],
                    "merge_requests": [self.view_mr(m) for m in p["_mrs"].values()],
                    "notes": {
                        f"{kind}/{obj['iid']}": [self.view_note(n) for n in obj["_notes"]]
                        for kind, coll in (("issue", p["_issues"]), ("mr", p["_mrs"]))
                        for obj in coll.values()
                    },
                    "labels": [self.view_label(p, lab) for lab in p["_labels"].values()],
                    "branches": {name: {"commit": b["commit"], "protected": b["protected"],
                                        "files": self.files_at(p, b["commit"])}
                                 for name, b in p["_branches"].items()},
                    "deployments": list(p["_deployments"].values()),
                    "snippets": [self.public(s) for s in p["_snippets"].values()],
                    "pipelines": [self.view_pipeline(x, full=True) for x in self.pipelines.values()
                                  if x["project_id"] == p["id"]],
                    "jobs": [self.view_job(j) | {"retried": j["_retried"]}
                             for j in self.jobs.values() if j["_project_id"] == p["id"]],
                })
            return {"projects": projects, "side_effects": list(self.side_effects)}

    # -- repository ------------------------------------------------------------------------
    def resolve_ref(self, p: dict, ref: str | None) -> str | None:
        """A branch name or a commit sha (full, or a prefix of 7+) to a commit sha."""
        if not ref:
            return None
        if ref in p["_branches"]:
            return p["_branches"][ref]["commit"]
        if ref in p["_commits"]:
            return ref
        if len(ref) >= 7 and re.fullmatch(r"[0-9a-f]+", ref):
            hits = [s for s in p["_commits"] if s.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
        return None

    def files_at(self, p: dict, sha: str) -> dict:
        return p["_commits"][sha]["_files"]

    def last_commit_for(self, p: dict, sha: str, path: str) -> str:
        """The newest commit (walking first parents from `sha`) that set `path` as it is."""
        content = self.files_at(p, sha).get(path)
        cur = sha
        while True:
            parents = p["_commits"][cur]["parent_ids"]
            if not parents or self.files_at(p, parents[0]).get(path) != content:
                return cur
            cur = parents[0]

    def commit_files(self, p: dict, branch: str, actions: list, message: str, user: dict,
                     parent: str | None = None, record: bool = True,
                     author_name: str | None = None, author_email: str | None = None) -> dict:
        """Apply commit `actions` (doc/api/commits.md#create-a-commit-with-multiple-files-and-
        actions) on top of `parent` (default: the branch head) and move the branch."""
        if parent is None:
            parent = p["_branches"][branch]["commit"]
        files = dict(self.files_at(p, parent))
        if not isinstance(actions, list) or not actions:
            raise bad_request("actions is missing", key="error")
        for n, a in enumerate(actions):
            kind, fp = (a or {}).get("action"), (a or {}).get("file_path")
            if kind not in ("create", "delete", "move", "update", "chmod"):
                raise bad_request(f"actions[{n}][action] does not have a valid value", key="error")
            if not fp:
                raise bad_request(f"actions[{n}][file_path] is missing", key="error")
            content = a.get("content")
            if content is not None and a.get("encoding") == "base64":
                content = base64.b64decode(content).decode()
            if kind == "create":
                if fp in files:
                    raise bad_request("A file with this name already exists")
                files[fp] = content or ""
            elif kind in ("update", "delete", "chmod"):
                if fp not in files:
                    raise bad_request("A file with this name doesn't exist")
                # `last_commit_id` (update, move, delete): the file must not have changed
                # since that commit (Files::MultiService#validate_file_status!).
                known = a.get("last_commit_id")
                if known and kind != "chmod" and self.last_commit_for(p, parent, fp) != known:
                    raise bad_request("You are attempting to update a file that has changed "
                                      "since you started editing it.")
                if kind == "update":
                    files[fp] = content or ""
                elif kind == "delete":
                    del files[fp]
            elif kind == "move":
                prev = a.get("previous_path")
                if prev not in files:
                    raise bad_request("A file with this name doesn't exist")
                old = files.pop(prev)
                files[fp] = content if content is not None else old
        ts = self.now()
        sha = fake_sha(p["id"], branch, parent, message, ts)
        email = f"{user['username']}@example.com"
        title = message.splitlines()[0] if message else ""
        commit = {"id": sha, "short_id": sha[:8], "title": title,
                  "message": message, "parent_ids": [parent], "created_at": ts,
                  "author_name": author_name or user["name"], "author_email": author_email or email,
                  "authored_date": ts, "committer_name": user["name"], "committer_email": email,
                  "committed_date": ts, "trailers": {}, "extended_trailers": {},
                  "web_url": f"{p['web_url']}/-/commit/{sha}",
                  "stats": {"additions": len(actions), "deletions": 0, "total": len(actions)},
                  "status": None, "last_pipeline": None, "project_id": p["id"],
                  "_files": files}
        p["_commits"][sha] = commit
        p["_branches"][branch]["commit"] = sha
        p["last_activity_at"] = ts
        if record:
            self.effect(f"{p['path_with_namespace']}:commit_created:{branch}")
        self._on_push(p, branch, sha, user, commit)
        return self.public(commit)

    def _on_push(self, src: dict, branch: str, sha: str, user: dict, commit: dict) -> None:
        """A new head on `branch`: every open MR from it gets the new `sha` and an "added 1
        commit" system note; on Premium with "Remove all approvals when commits are added to
        the source branch" (reset_approvals_on_push, default on) its approvals go, with a
        system note (doc/user/project/merge_requests/approvals/settings.md)."""
        for p in self.projects.values():
            for mr in p["_mrs"].values():
                if (mr["source_project_id"] != src["id"] or mr["source_branch"] != branch
                        or mr["state"] != "opened"):
                    continue
                mr["sha"] = sha
                mr["updated_at"] = self.now()
                self._create_note(p, "mr", mr,
                                  f"added 1 commit\n\n<ul><li>{sha[:8]} - {commit['title']}"
                                  f"</li></ul>\n\n[Compare with previous version]"
                                  f"({mr['web_url']}/diffs)", user["id"], system=True)
                if p["_tier"] == "premium" and p["_reset_approvals_on_push"] and mr["_approved_by"]:
                    names = [self.users[a["user_id"]]["username"] for a in mr["_approved_by"]]
                    mr["_approved_by"] = []
                    self._create_note(p, "mr", mr, "reset approvals from "
                                      + " and ".join(f"@{n}" for n in names)
                                      + " by pushing to the branch", user["id"], system=True)
                    self.effect(f"{self.ref_name(p, 'mr', mr['iid'])}:approvals_reset")

    # -- mutations used by the REST layer ------------------------------------------------
    def retry_job(self, project: dict, job: dict, user: dict) -> dict:
        """GitLab clones the job: a NEW id, status pending, same pipeline; the old one is
        marked retried and drops out of the pipeline's job list."""
        if job["status"] not in RETRYABLE or job["_retried"]:
            raise forbidden("Job is not retryable")
        new_id = self._next("job")
        ts = self.now()
        new = {**job, "id": new_id, "status": "pending", "failure_reason": None,
               "created_at": ts, "started_at": None, "finished_at": None,
               "user": self._user_brief(user["id"]),
               "web_url": f"{project['web_url']}/-/jobs/{new_id}",
               "_retried": False, "_trace": {"text": ""}}
        job["_retried"] = True
        self.jobs[new_id] = new
        pipe = self.pipelines[job["_pipeline_id"]]
        pipe["_explicit_status"] = False
        self._recompute(pipe)
        self.effect(f"{project['path_with_namespace']}:job_retried:{job['id']}->{new_id}")
        return new

    def cancel_job(self, project: dict, job: dict, user: dict) -> dict:
        # `build.cancel` does nothing to a finished job and GitLab still answers 201.
        if job["status"] in CANCELABLE:
            self._move_job(job, "canceled")
            self.effect(f"{project['path_with_namespace']}:job_canceled:{job['id']}")
        return job

    def _recompute(self, pipe: dict) -> None:
        """Pipeline status from its latest jobs, roughly as Ci::HasStatus.composite_status."""
        if pipe["_explicit_status"]:
            return
        statuses = [(j["status"], j["allow_failure"]) for j in self._pipeline_jobs(pipe["id"])]
        if not statuses:
            return
        s = {st for st, _ in statuses}
        if s & {"running", "pending", "created", "preparing", "waiting_for_resource"}:
            new = "running" if s & {"running", "success", "failed"} else "pending"
        elif any(st == "failed" and not af for st, af in statuses):
            new = "failed"
        elif "canceled" in s:
            new = "canceled"
        elif s & {"manual", "scheduled"} and not s & {"success", "failed"}:
            new = "manual"
        else:
            new = "success"
        pipe["status"] = new
        pipe["updated_at"] = self.now()
        pipe["finished_at"] = None if new in ACTIVE else pipe["updated_at"]
        if new in ("running", "pending") and not pipe["started_at"]:
            pipe["started_at"] = pipe["updated_at"]

    def _pipeline_jobs(self, pipeline_id: int, include_retried: bool = False) -> list[dict]:
        return sorted((j for j in self.jobs.values() if j["_pipeline_id"] == pipeline_id
                       and (include_retried or not j["_retried"])), key=lambda j: j["id"])

    def _ensure_label(self, p: dict, name: str, color: str = "#6699cc",
                      description: str | None = None) -> dict:
        if name not in p["_labels"]:
            p["_labels"][name] = {
                "id": self._next("label"), "name": name, "color": color,
                "text_color": "#FFFFFF", "description": description,
                "description_html": description or "", "subscribed": False,
                "priority": None, "is_project_label": True,
            }
        return p["_labels"][name]

    def _create_note(self, p: dict, kind: str, obj: dict, body: str, author_id: int,
                     system: bool = False, created_at: str | None = None) -> dict:
        nid = self._next("note")
        ts = created_at or self.now()
        note = {
            "id": nid, "type": None, "body": body, "attachment": None,
            "author": self._user_brief(author_id), "created_at": ts, "updated_at": ts,
            "system": bool(system), "noteable_id": obj["id"],
            "noteable_type": "Issue" if kind == "issue" else "MergeRequest",
            "noteable_iid": obj["iid"], "project_id": p["id"], "resolvable": False,
            "confidential": False, "internal": False, "imported": False,
            "imported_from": "none", "commands_changes": {}, "_emoji": [], "_kind": kind,
        }
        obj["_notes"].append(note)
        obj["user_notes_count"] = sum(1 for n in obj["_notes"] if not n["system"])
        obj["updated_at"] = max(obj["updated_at"], ts)  # a note touches its noteable
        self.notes[nid] = note
        if not system:
            self.effect(f"{self.ref_name(p, kind, obj['iid'])}:note_created")
        return note

    def _scoped_filter(self, p: dict, old: list[str], new: list[str],
                       selection: Iterable[str] | None = None) -> list[str]:
        """On Premium, an issuable keeps one label per scope: when a request adds a label
        to a scope that then holds several, only the last one the request selected stays
        (EE IssuableBaseService#filter_mutually_exclusive_labels; doc/user/project/labels.md
        #scoped-labels). A scope the request did not touch is left as it was. Free: no-op."""
        if p["_tier"] != "premium":
            return new
        added = [x for x in new if x not in old]
        if not added:
            return new
        order = list(selection) if selection is not None else added
        keep: set[str] = set()
        by_scope: dict[str, list[str]] = {}
        for name in new:
            scope = label_scope(name)
            if scope is None:
                keep.add(name)
            else:
                by_scope.setdefault(scope, []).append(name)
        for names in by_scope.values():
            if len(names) == 1 or not any(n in added for n in names):
                keep.update(names)
            else:
                ranked = [n for n in order if n in names] or [n for n in names if n in added]
                keep.add(ranked[-1])
        return [x for x in new if x in keep]

    def change_labels(self, p: dict, kind: str, obj: dict, new: list[str], user: dict,
                      selection: Iterable[str] | None = None) -> None:
        """Set labels, creating missing project labels as GitLab does, applying scoped-label
        exclusivity on Premium. Modern GitLab records label changes as resource label events
        (doc/api/resource_label_events.md), not as notes, so no system note appears."""
        old = obj["labels"]
        new = self._scoped_filter(p, old, list(dict.fromkeys(new)), selection)
        added = [x for x in new if x not in old]
        removed = [x for x in old if x not in new]
        if not added and not removed:
            return
        for name in added:
            self._ensure_label(p, name)
        obj["labels"] = new
        obj["updated_at"] = self.now()
        ref = self.ref_name(p, kind, obj["iid"])
        events = obj["_label_events"]
        for action, names in (("add", added), ("remove", removed)):
            for x in names:
                self.effect(f"{ref}:label_{'added' if action == 'add' else 'removed'}:{x}")
                label = p["_labels"].get(x) or self._ensure_label(p, x)
                events.append({
                    "id": self._next("label_event"),
                    "user": self._user_brief(user["id"]),
                    "created_at": obj["updated_at"],
                    "resource_type": "Issue" if kind == "issue" else "MergeRequest",
                    "resource_id": obj["id"],
                    "label": {k: label.get(k) for k in ("id", "name", "color", "description")},
                    "action": action,
                })

    def trace_size(self, job: dict) -> int:
        t = job["_trace"]
        if t.get("size") is not None:
            return int(t["size"])
        text = t.get("text") or ""
        return len(text if isinstance(text, bytes) else text.encode())

    def trace_chunks(self, job: dict) -> tuple[int, Any, float]:
        """(length, chunk iterator, delay per chunk) for a job's log; generated logs never
        materialise in full."""
        t = dict(job["_trace"])
        delay = float(t.get("chunk_delay") or 0.0)
        chunk = int(t.get("chunk_size") or 64 * 1024)
        if t.get("size") is None:
            text = t.get("text") or ""
            data = text if isinstance(text, bytes) else text.encode()
            return len(data), (data[i:i + chunk] for i in range(0, len(data), chunk)), delay
        size = int(t["size"])
        tail = (t.get("tail") or "").encode()
        line = (t.get("line") or "x\n").encode()

        def gen():
            body = max(0, size - len(tail))
            block = line * max(1, chunk // len(line))
            sent = 0
            while sent < body:
                piece = block[: min(len(block), body - sent)]
                sent += len(piece)
                if sent == body and not piece.endswith(b"\n"):
                    piece = piece[:-1] + b"\n"  # end the filler on a line boundary
                yield piece
            yield tail[-size:] if size < len(tail) else tail

        return size, gen(), delay

    # -- REST views ------------------------------------------------------------------------
    def _user_brief(self, user_id: int) -> dict:
        u = self.users.get(int(user_id)) or {"id": int(user_id), "username": f"user{user_id}",
                                              "name": f"user{user_id}", "state": "active",
                                              "locked": False, "avatar_url": None, "web_url": ""}
        return {k: u.get(k) for k in ("id", "username", "name", "state", "locked", "avatar_url",
                                      "web_url")}

    def view_user(self, user_id: int, full: bool = False) -> dict:
        u = self.user(user_id)
        out = self._user_brief(user_id)
        if full:
            out.update({"created_at": u["created_at"], "bio": "", "location": "",
                        "public_email": None, "linkedin": "", "twitter": "", "discord": "",
                        "website_url": "", "organization": "", "job_title": "", "pronouns": None,
                        "bot": u.get("bot", False), "work_information": None,
                        "followers": 0, "following": 0, "is_followed": False,
                        "local_time": None})
        return out

    @staticmethod
    def public(d: dict) -> dict:
        return {k: v for k, v in d.items() if not k.startswith("_")}

    def view_project(self, p: dict, user: dict | None = None) -> dict:
        out = self.public(p)
        if user is not None:
            level = self.access(p, user)
            # lib/api/entities/project.rb exposes the CI/CD settings to those who may change
            # them (admin_project: Maintainer and up).
            if level < MAINTAINER:
                out.pop("build_timeout", None)
                out.pop("ci_config_path", None)
            out["permissions"] = {
                "project_access": ({"access_level": level, "notification_level": 3}
                                   if level else None),
                "group_access": None}
        return out

    def view_member(self, p: dict, user_id: int) -> dict:
        u = self.users[user_id]
        return {**self._user_brief(user_id), "access_level": p["_members"][user_id],
                "created_at": u["created_at"], "expires_at": None,
                "membership_state": "active", "email": None, "locked": u.get("locked", False)}

    def view_label(self, p: dict, lab: dict) -> dict:
        out = dict(lab)
        for state, kind in (("open", "opened"), ("closed", "closed")):
            out[f"{state}_issues_count"] = sum(1 for i in p["_issues"].values()
                                               if i["state"] == kind and lab["name"] in i["labels"])
        out["open_merge_requests_count"] = sum(1 for m in p["_mrs"].values()
                                               if m["state"] == "opened"
                                               and lab["name"] in m["labels"])
        return out

    def view_pipeline(self, pipe: dict, full: bool = False) -> dict:
        """`full`: GET /pipelines/:id (Entities::Ci::Pipeline); otherwise the list entity
        (Entities::Ci::PipelineBasic), which has no started_at/finished_at/duration."""
        keys = ["id", "iid", "project_id", "sha", "ref", "status", "source", "created_at",
                "updated_at", "web_url"]
        if not full:
            return {k: pipe[k] for k in keys}
        out = self.public(pipe)
        if pipe["started_at"] and pipe["finished_at"]:
            out["duration"] = int(parse_time(pipe["finished_at"]) - parse_time(pipe["started_at"]))
        else:
            out["duration"] = None
        out["detailed_status"] = {"text": pipe["status"], "label": pipe["status"],
                                  "group": pipe["status"], "icon": f"status_{pipe['status']}",
                                  "has_details": True, "details_path":
                                  pipe["web_url"].split("://", 1)[-1].split("/", 1)[-1]}
        return out

    def view_job(self, job: dict) -> dict:
        pipe = self.pipelines[job["_pipeline_id"]]
        out = self.public(job)
        if job["status"] != "failed":
            out.pop("failure_reason", None)  # GitLab exposes it only for failed jobs
        start, end = job["started_at"], job["finished_at"]
        out["duration"] = (round((parse_time(end) if end else self._last or time.time())
                                 - parse_time(start), 3) if start else None)
        out["queued_duration"] = (round(parse_time(start) - parse_time(job["created_at"]), 3)
                                  if start else None)
        out["pipeline"] = {"id": pipe["id"], "project_id": pipe["project_id"], "ref": pipe["ref"],
                           "sha": pipe["sha"], "status": pipe["status"],
                           "source": pipe["source"], "web_url": pipe["web_url"],
                           "created_at": pipe["created_at"], "updated_at": pipe["updated_at"]}
        out["project"] = {"ci_job_token_scope_enabled": False}
        return out

    def view_issue(self, issue: dict) -> dict:
        return self.public(issue)

    def view_mr(self, mr: dict) -> dict:
        p = self.projects[mr["target_project_id"]]
        out = self.public(mr)
        draft = bool(DRAFT_RE.match(mr["title"] or ""))
        out["draft"] = out["work_in_progress"] = draft
        # detailed_merge_status (doc/api/merge_requests.md#merge-status), the subset we model.
        if mr["state"] != "opened":
            detailed = "not_open"
        elif draft:
            detailed = "draft_status"
        elif p["_tier"] == "premium" and self._approvals_left(p, mr) > 0:
            detailed = "not_approved"
        else:
            detailed = "mergeable"
        out["detailed_merge_status"] = detailed
        return out

    def view_note(self, note: dict) -> dict:
        return self.public(note)

    def view_emoji(self, e: dict) -> dict:
        return self.public(e)

    def view_commit(self, p: dict, sha: str) -> dict:
        c = p["_commits"][sha]
        return {k: c[k] for k in ("id", "short_id", "created_at", "parent_ids", "title",
                                  "message", "author_name", "author_email", "authored_date",
                                  "committer_name", "committer_email", "committed_date",
                                  "trailers", "extended_trailers", "web_url")}

    def view_branch(self, p: dict, name: str, user: dict | None = None) -> dict:
        b = p["_branches"][name]
        return {"name": name, "merged": False, "protected": b["protected"],
                "default": name == p["default_branch"],
                "developers_can_push": b["protected"] and b["push_access_level"] <= DEVELOPER,
                "developers_can_merge": b["protected"] and b["merge_access_level"] <= DEVELOPER,
                "can_push": self.can_push(p, user or self.users[BOT_USER["id"]], name),
                "web_url": f"{p['web_url']}/-/tree/{name}",
                "commit": self.view_commit(p, b["commit"])}

    def _approvals_left(self, p: dict, mr: dict) -> int:
        return max(0, mr["_approvals_required"] - len(mr["_approved_by"]))

    def view_approvals(self, p: dict, mr: dict, user: dict | None = None) -> dict:
        """GET .../approvals. Free (CE's Entities::MergeRequestApprovals): `approved` means
        "has at least one approval" and there are no approval rules, so no
        approvals_required/approvals_left. Premium (EE's ApprovalState): the rules count, and
        `approved` means no approvals are left (doc/api/merge_request_approvals.md)."""
        approved_by = [{"user": self._user_brief(a["user_id"]), "approved_at": a["at"]}
                       for a in mr["_approved_by"]]
        uid = user["id"] if user else None
        has = any(a["user_id"] == uid for a in mr["_approved_by"])
        can = (user is not None and not has and self.access(p, user) >= DEVELOPER
               and mr["state"] == "opened")
        if p["_tier"] != "premium":
            return {"user_has_approved": has, "user_can_approve": can,
                    "approved": bool(approved_by), "approved_by": approved_by}
        left = self._approvals_left(p, mr)
        return {"id": mr["id"], "iid": mr["iid"], "project_id": p["id"], "title": mr["title"],
                "description": mr["description"], "state": mr["state"],
                "created_at": mr["created_at"], "updated_at": mr["updated_at"],
                "merge_status": mr["merge_status"], "approved": left == 0,
                "approvals_required": mr["_approvals_required"], "approvals_left": left,
                "require_password_to_approve": False, "approved_by": approved_by,
                "suggested_approvers": [], "approvers": [], "approver_groups": [],
                "user_has_approved": has, "user_can_approve": can,
                "approval_rules_left": [], "has_approval_rules": mr["_approvals_required"] > 0,
                "merge_request_approvers_available": True,
                "multiple_approval_rules_available": True, "invalid_approvers_rules": []}

    def closes_issues(self, p: dict, mr: dict) -> list[dict]:
        if mr["_closes"] is not None:
            iids = list(mr["_closes"])
        else:
            iids = []
            for m in CLOSING_RE.finditer(mr["description"] or ""):
                iids += [int(x) for x in re.findall(r"#(\d+)", m.group(1))]
        return [self.view_issue(p["_issues"][i]) for i in dict.fromkeys(iids) if i in p["_issues"]]
