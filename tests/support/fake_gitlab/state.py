"""In-memory GitLab state: the data model behind the fake REST API and its seeding operations.

Everything is plain dicts guarded by one lock, so the state can be seeded from JSON over the
control API (subprocess mode) exactly as from Python (thread mode). Internal records keep a few
private fields (leading underscore) that the REST views never expose, because GitLab's own
responses do not carry them and our code must not start relying on them.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from datetime import datetime, timezone
from typing import Any, Iterable

# GitLab access levels (doc/api/members.md).
GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 15, 20, 30, 40, 50

BOT_TOKEN = "fake-bot-token"
BOT_USER = {"id": 1, "username": "devops-bot", "name": "DevOps Bot"}

# Job statuses GitLab lets you retry (Ci::Build#retryable?: complete and not archived).
RETRYABLE = {"success", "failed", "canceled"}
ACTIVE = {"created", "waiting_for_resource", "preparing", "pending", "running", "scheduled", "manual"}

# GitLab's default issue closing pattern, simplified to same-project references.
CLOSING_RE = re.compile(
    r"(?i)\b(?:clos(?:e[sd]?|ing)|fix(?:e[sd]|ing)?|resolv(?:e[sd]?|ing)|implement(?:s|ed|ing)?)"
    r":? +(?:issues? +)?((?:#\d+(?:\s*(?:,|and)\s*)?)+)"
)


class FakeError(Exception):
    """An API error: HTTP status plus GitLab's body (`{"message": ...}` or `{"error": ...}`)."""

    def __init__(self, status: int, message: Any, key: str = "message") -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.body = {key: message}


def not_found(what: str | None = None) -> FakeError:
    return FakeError(404, f"404 {what} Not Found" if what else "404 Not found")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fake_sha(*parts: Any) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def split_labels(value: Any) -> list[str]:
    """GitLab takes labels as a comma-separated string or an array."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    else:
        items = list(value)
    return [str(x).strip() for x in items if str(x).strip()]


class FakeState:
    """The whole fake GitLab. Ops whose names are in OPS can be called over the control API."""

    OPS = (
        "add_user", "add_project", "add_member", "add_pipeline", "add_job", "set_job_status",
        "set_pipeline_status", "set_trace", "set_test_report", "add_issue", "add_mr", "approve_mr",
        "add_note", "add_freeze_period", "add_label", "add_branch", "seed", "snapshot",
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
            self._ids = {k: itertools.count(1000) for k in
                         ("project", "pipeline", "job", "issue", "mr", "note", "label", "emoji",
                          "deployment", "freeze", "user", "label_event")}
            self.add_user(BOT_USER["username"], id=BOT_USER["id"], name=BOT_USER["name"],
                          token=BOT_TOKEN)

    def _next(self, kind: str) -> int:
        return next(self._ids[kind])

    def effect(self, record: str) -> None:
        self.side_effects.append(record)

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
        coll = project["issues"] if kind == "issue" else project["mrs"]
        obj = coll.get(int(iid))
        if obj is None:
            raise not_found("Issue" if kind == "issue" else "Merge Request")
        return obj

    def ref_name(self, project: dict, kind: str, iid: int) -> str:
        """Prow-style side-effect prefix: `group/proj#5` for issues, `group/proj!5` for MRs."""
        return f"{project['path_with_namespace']}{'#' if kind == 'issue' else '!'}{iid}"

    # -- seeding ops -----------------------------------------------------------------------
    def add_user(self, username: str, id: int | None = None, name: str | None = None,
                 token: str | None = None) -> dict:
        with self.lock:
            uid = int(id) if id is not None else self._next("user")
            self.users[uid] = {
                "id": uid, "username": username, "name": name or username, "state": "active",
                "locked": False, "avatar_url": None,
                "web_url": f"{self.base_url}/{username}",
            }
            if token:
                self.tokens[token] = uid
            return self.users[uid]

    def add_project(self, path: str, id: int | None = None, default_branch: str = "main",
                    members: dict | None = None, files: dict | None = None) -> dict:
        with self.lock:
            pid = int(id) if id is not None else self._next("project")
            namespace, _, name = path.rpartition("/")
            p = {
                "id": pid, "name": name, "path": name, "path_with_namespace": path,
                "name_with_namespace": path.replace("/", " / "),
                "namespace": {"id": pid + 100000, "name": namespace, "path": namespace,
                              "full_path": namespace, "kind": "group"},
                "default_branch": default_branch, "visibility": "private",
                "web_url": f"{self.base_url}/{path}", "created_at": now_iso(),
                # private collections
                "_members": {}, "_issues": {}, "_mrs": {}, "_labels": {}, "_branches": {},
                "_commits": {}, "_deployments": {}, "_freeze": [], "_test_reports": {},
            }
            p["issues"], p["mrs"] = p["_issues"], p["_mrs"]
            self.projects[pid] = p
            sha = fake_sha(path, "initial")
            p["_commits"][sha] = {"id": sha, "short_id": sha[:8], "title": "Initial commit",
                                  "message": "Initial commit", "parent_ids": [],
                                  "created_at": now_iso()}
            p["_branches"][default_branch] = {"commit": sha, "files": dict(files or {})}
            for uid, level in (members or {}).items():
                self.add_member(pid, int(uid), int(level))
            return self.view_project(p)

    def add_member(self, project: Any, user_id: int, access_level: int) -> dict:
        with self.lock:
            p = self.project(project)
            if int(user_id) not in self.users:
                self.add_user(f"user{user_id}", id=int(user_id))
            p["_members"][int(user_id)] = int(access_level)
            return self.view_member(p, int(user_id))

    def add_pipeline(self, project: Any, ref: str | None = None, sha: str | None = None,
                     status: str = "failed", source: str = "push", jobs: Iterable[dict] = (),
                     id: int | None = None, user_id: int | None = None) -> dict:
        """Create a pipeline, optionally with jobs (dicts of add_job's arguments)."""
        jobs = list(jobs)
        with self.lock:
            p = self.project(project)
            ref = ref or p["default_branch"]
            branch = p["_branches"].get(ref)
            sha = sha or (branch["commit"] if branch else fake_sha(p["id"], ref))
            pid = int(id) if id is not None else self._next("pipeline")
            ts = now_iso()
            pipe = {
                "id": pid, "iid": len([x for x in self.pipelines.values()
                                       if x["project_id"] == p["id"]]) + 1,
                "project_id": p["id"], "sha": sha, "ref": ref, "status": status,
                "source": source, "created_at": ts, "updated_at": ts,
                "web_url": f"{p['web_url']}/-/pipelines/{pid}",
                "before_sha": "0" * 40, "tag": False, "yaml_errors": None,
                "user": self._user_brief(user_id or BOT_USER["id"]),
                "started_at": ts, "finished_at": None if status in ACTIVE else ts,
                "committed_at": None, "duration": None, "queued_duration": None,
                "coverage": None, "_explicit_status": True,
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
                allow_failure: bool = False, trace: str | None = None, id: int | None = None,
                user_id: int | None = None) -> dict:
        with self.lock:
            p = self.project(project)
            pipe = self.pipeline(p, pipeline_id)
            jid = int(id) if id is not None else self._next("job")
            ts = now_iso()
            if status == "failed" and failure_reason is None:
                failure_reason = "script_failure"
            job = {
                "id": jid, "name": name, "stage": stage, "status": status,
                "failure_reason": failure_reason, "allow_failure": bool(allow_failure),
                "ref": pipe["ref"], "tag": False, "coverage": None, "archived": False,
                "created_at": ts, "started_at": None if status in {"created", "pending"} else ts,
                "finished_at": None if status in ACTIVE else ts,
                "erased_at": None, "duration": None, "queued_duration": None,
                "user": self._user_brief(user_id or BOT_USER["id"]),
                "commit": {"id": pipe["sha"], "short_id": pipe["sha"][:8], "title": "commit"},
                "runner": None, "artifacts": [], "tag_list": [],
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
            job["status"] = status
            ts = now_iso()
            if status not in {"created", "pending"} and not job["started_at"]:
                job["started_at"] = ts
            job["finished_at"] = None if status in ACTIVE else ts
            job["failure_reason"] = (failure_reason or "script_failure") if status == "failed" else None
            pipe = self.pipelines[job["_pipeline_id"]]
            pipe["_explicit_status"] = False
            self._recompute(pipe)
            return self.view_job(job)

    def set_pipeline_status(self, pipeline_id: int, status: str) -> dict:
        with self.lock:
            pipe = self.pipelines.get(int(pipeline_id))
            if pipe is None:
                raise not_found()
            pipe["status"], pipe["updated_at"] = status, now_iso()
            pipe["_explicit_status"] = True
            return self.view_pipeline(pipe, full=True)

    def set_trace(self, job_id: int, text: str | None = None, size: int | None = None,
                  line: str = "log line: nothing to see here\n", tail: str = "",
                  chunk_size: int = 64 * 1024, chunk_delay: float = 0.0) -> dict:
        """Set a job's log: literal `text`, or a generated one of `size` bytes (repeated `line`,
        ending with `tail`) that is streamed without ever being held in memory; `chunk_delay`
        sleeps between chunks to make it slow."""
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
                  iid: int | None = None, assignee_ids: Iterable[int] = ()) -> dict:
        with self.lock:
            p = self.project(project)
            iid = int(iid) if iid is not None else max(p["_issues"], default=0) + 1
            ts = now_iso()
            labels = split_labels(labels)
            for name in labels:
                self._ensure_label(p, name)
            issue = {
                "id": self._next("issue"), "iid": iid, "project_id": p["id"], "title": title,
                "description": description, "state": state, "labels": labels,
                "author": self._user_brief(author_id or BOT_USER["id"]),
                "assignees": [self._user_brief(u) for u in assignee_ids], "assignee": None,
                "milestone": None, "confidential": False, "discussion_locked": None,
                "created_at": ts, "updated_at": ts,
                "closed_at": ts if state == "closed" else None, "closed_by": None,
                "user_notes_count": 0, "upvotes": 0, "downvotes": 0, "due_date": None,
                "web_url": f"{p['web_url']}/-/issues/{iid}", "type": "ISSUE",
                "issue_type": "issue",
                "references": {"short": f"#{iid}", "relative": f"#{iid}",
                               "full": f"{p['path_with_namespace']}#{iid}"},
                "_notes": [],
            }
            p["_issues"][iid] = issue
            return self.view_issue(issue)

    def add_mr(self, project: Any, title: str, source_branch: str, target_branch: str | None = None,
               description: str = "", labels: Any = (), state: str = "opened",
               author_id: int | None = None, iid: int | None = None,
               closes_issues: Iterable[int] | None = None, approvals_required: int = 0,
               approved_by: Iterable[int] = (), sha: str | None = None) -> dict:
        with self.lock:
            p = self.project(project)
            iid = int(iid) if iid is not None else max(p["_mrs"], default=0) + 1
            ts = now_iso()
            labels = split_labels(labels)
            for name in labels:
                self._ensure_label(p, name)
            branch = p["_branches"].get(source_branch)
            mr = {
                "id": self._next("mr"), "iid": iid, "project_id": p["id"], "title": title,
                "description": description, "state": state, "labels": labels,
                "source_branch": source_branch,
                "target_branch": target_branch or p["default_branch"],
                "source_project_id": p["id"], "target_project_id": p["id"],
                "author": self._user_brief(author_id or BOT_USER["id"]),
                "assignees": [], "reviewers": [], "draft": False, "work_in_progress": False,
                "merge_status": "can_be_merged", "detailed_merge_status": "mergeable",
                "sha": sha or (branch["commit"] if branch else fake_sha(p["id"], source_branch)),
                "merge_commit_sha": None, "squash": False, "created_at": ts, "updated_at": ts,
                "merged_at": None, "closed_at": None, "user_notes_count": 0,
                "web_url": f"{p['web_url']}/-/merge_requests/{iid}",
                "references": {"short": f"!{iid}", "relative": f"!{iid}",
                               "full": f"{p['path_with_namespace']}!{iid}"},
                "_notes": [], "_closes": None if closes_issues is None else [int(i) for i in closes_issues],
                "_approvals_required": int(approvals_required),
                "_approved_by": [int(u) for u in approved_by],
            }
            p["_mrs"][iid] = mr
            return self.view_mr(mr)

    def approve_mr(self, project: Any, iid: int, user_id: int) -> dict:
        with self.lock:
            p = self.project(project)
            mr = self.noteable(p, "mr", iid)
            if int(user_id) not in self.users:
                self.add_user(f"user{user_id}", id=int(user_id))
            if int(user_id) not in mr["_approved_by"]:
                mr["_approved_by"].append(int(user_id))
            return self.view_approvals(p, mr)

    def add_note(self, project: Any, kind: str, iid: int, body: str, author_id: int | None = None,
                 system: bool = False) -> dict:
        with self.lock:
            p = self.project(project)
            obj = self.noteable(p, kind, iid)
            return self.view_note(self._create_note(p, kind, obj, body, author_id or BOT_USER["id"],
                                                    system=system))

    def add_freeze_period(self, project: Any, freeze_start: str, freeze_end: str,
                          cron_timezone: str = "UTC") -> dict:
        with self.lock:
            p = self.project(project)
            ts = now_iso()
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
            return dict(self._ensure_label(p, name, color, description))

    def add_branch(self, project: Any, name: str, ref: str | None = None,
                   files: dict | None = None) -> dict:
        with self.lock:
            p = self.project(project)
            src = p["_branches"][ref or p["default_branch"]]
            p["_branches"][name] = {"commit": src["commit"],
                                    "files": {**src["files"], **(files or {})}}
            return self.view_branch(p, name)

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
                    "issues": [self.view_issue(i) for i in p["_issues"].values()],
                    "merge_requests": [self.view_mr(m) for m in p["_mrs"].values()],
                    "notes": {
                        f"{kind}/{obj['iid']}": [self.view_note(n) for n in obj["_notes"]]
                        for kind, coll in (("issue", p["_issues"]), ("mr", p["_mrs"]))
                        for obj in coll.values()
                    },
                    "labels": [dict(lab) for lab in p["_labels"].values()],
                    "branches": {name: {"commit": b["commit"], "files": b["files"]}
                                 for name, b in p["_branches"].items()},
                    "deployments": list(p["_deployments"].values()),
                    "pipelines": [self.view_pipeline(x, full=True) for x in self.pipelines.values()
                                  if x["project_id"] == p["id"]],
                    "jobs": [self.view_job(j) | {"retried": j["_retried"]}
                             for j in self.jobs.values() if j["_project_id"] == p["id"]],
                })
            return {"projects": projects, "side_effects": list(self.side_effects)}

    # -- mutations used by the REST layer ------------------------------------------------
    def retry_job(self, project: dict, job: dict, user: dict) -> dict:
        """GitLab clones the job: a NEW id, status pending, same pipeline; the old one is
        marked retried and drops out of the pipeline's job list."""
        if job["status"] not in RETRYABLE or job["_retried"]:
            raise FakeError(403, "403 Forbidden  - Job is not retryable")
        new_id = self._next("job")
        ts = now_iso()
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
        pipe["updated_at"] = now_iso()
        pipe["finished_at"] = None if new in ACTIVE else pipe["updated_at"]

    def _pipeline_jobs(self, pipeline_id: int, include_retried: bool = False) -> list[dict]:
        return sorted((j for j in self.jobs.values() if j["_pipeline_id"] == pipeline_id
                       and (include_retried or not j["_retried"])), key=lambda j: j["id"])

    def _ensure_label(self, p: dict, name: str, color: str = "#6699cc",
                      description: str | None = None) -> dict:
        if name not in p["_labels"]:
            p["_labels"][name] = {
                "id": self._next("label"), "name": name, "color": color,
                "text_color": "#FFFFFF", "description": description,
                "description_html": description or "", "open_issues_count": 0,
                "closed_issues_count": 0, "open_merge_requests_count": 0,
                "subscribed": False, "priority": None, "is_project_label": True,
            }
        return p["_labels"][name]

    def _create_note(self, p: dict, kind: str, obj: dict, body: str, author_id: int,
                     system: bool = False) -> dict:
        nid = self._next("note")
        ts = now_iso()
        note = {
            "id": nid, "type": None, "body": body, "attachment": None,
            "author": self._user_brief(author_id), "created_at": ts, "updated_at": ts,
            "system": bool(system), "noteable_id": obj["id"],
            "noteable_type": "Issue" if kind == "issue" else "MergeRequest",
            "noteable_iid": obj["iid"], "project_id": p["id"], "resolvable": False,
            "confidential": False, "internal": False, "imported": False,
            "commands_changes": {}, "_emoji": [], "_kind": kind,
        }
        obj["_notes"].append(note)
        obj["user_notes_count"] = sum(1 for n in obj["_notes"] if not n["system"])
        self.notes[nid] = note
        if not system:
            self.effect(f"{self.ref_name(p, kind, obj['iid'])}:note_created")
        return note

    def change_labels(self, p: dict, kind: str, obj: dict, new: list[str], user: dict) -> None:
        """Set labels, creating missing project labels as GitLab does. Modern GitLab records
        label changes as resource label events (doc/api/resource_label_events.md), not as
        notes, so no system note appears in the notes API."""
        old = obj["labels"]
        added = [x for x in new if x not in old]
        removed = [x for x in old if x not in new]
        if not added and not removed:
            return
        for name in added:
            self._ensure_label(p, name)
        obj["labels"] = list(dict.fromkeys(new))
        ref = self.ref_name(p, kind, obj["iid"])
        events = obj.setdefault("_label_events", [])
        for action, names in (("add", added), ("remove", removed)):
            for x in names:
                self.effect(f"{ref}:label_{'added' if action == 'add' else 'removed'}:{x}")
                label = p["_labels"].get(x) or self._ensure_label(p, x)
                events.append({
                    "id": self._next("label_event"),
                    "user": {k: user.get(k) for k in ("id", "username", "name")},
                    "created_at": now_iso(),
                    "resource_type": "Issue" if kind == "issue" else "MergeRequest",
                    "resource_id": obj["id"],
                    "label": {k: label.get(k) for k in ("id", "name", "color", "description")},
                    "action": action,
                })

    def trace_size(self, job: dict) -> int:
        t = job["_trace"]
        if t.get("size") is not None:
            return int(t["size"])
        return len((t.get("text") or "").encode())

    def trace_chunks(self, job: dict) -> tuple[int, Any, float]:
        """(length, chunk iterator, delay per chunk) for a job's log; generated logs never
        materialise in full."""
        t = dict(job["_trace"])
        delay = float(t.get("chunk_delay") or 0.0)
        chunk = int(t.get("chunk_size") or 64 * 1024)
        if t.get("size") is None:
            data = (t.get("text") or "").encode()
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
                                              "avatar_url": None, "web_url": ""}
        return {k: u[k] for k in ("id", "username", "name", "state", "avatar_url", "web_url")}

    @staticmethod
    def public(d: dict) -> dict:
        return {k: v for k, v in d.items() if not k.startswith("_")
                and k not in ("issues", "mrs")}

    def view_project(self, p: dict) -> dict:
        return self.public(p)

    def view_member(self, p: dict, user_id: int) -> dict:
        u = self.users[user_id]
        return {**self._user_brief(user_id), "access_level": p["_members"][user_id],
                "created_at": now_iso(), "expires_at": None, "membership_state": "active",
                "email": None, "locked": u.get("locked", False)}

    def view_pipeline(self, pipe: dict, full: bool = False) -> dict:
        keys = ["id", "iid", "project_id", "sha", "ref", "status", "source", "created_at",
                "updated_at", "web_url"]
        if full:
            out = self.public(pipe)
            out["detailed_status"] = {"text": pipe["status"], "label": pipe["status"],
                                      "group": pipe["status"], "icon": f"status_{pipe['status']}"}
            return out
        return {k: pipe[k] for k in keys}

    def view_job(self, job: dict) -> dict:
        pipe = self.pipelines[job["_pipeline_id"]]
        out = self.public(job)
        if job["status"] != "failed":
            out.pop("failure_reason", None)  # GitLab exposes it only for failed jobs
        out["pipeline"] = {"id": pipe["id"], "project_id": pipe["project_id"], "ref": pipe["ref"],
                           "sha": pipe["sha"], "status": pipe["status"],
                           "source": pipe["source"], "web_url": pipe["web_url"],
                           "created_at": pipe["created_at"], "updated_at": pipe["updated_at"]}
        out["project"] = {"ci_job_token_scope_enabled": False}
        return out

    def view_issue(self, issue: dict) -> dict:
        return self.public(issue)

    def view_mr(self, mr: dict) -> dict:
        return self.public(mr)

    def view_note(self, note: dict) -> dict:
        return self.public(note)

    def view_emoji(self, e: dict) -> dict:
        return self.public(e)

    def view_branch(self, p: dict, name: str) -> dict:
        b = p["_branches"][name]
        c = p["_commits"][b["commit"]]
        return {"name": name, "merged": False, "protected": name == p["default_branch"],
                "default": name == p["default_branch"], "developers_can_push": False,
                "developers_can_merge": False, "can_push": True,
                "web_url": f"{p['web_url']}/-/tree/{name}",
                "commit": {k: c[k] for k in ("id", "short_id", "title", "message", "parent_ids",
                                             "created_at")}}

    def view_approvals(self, p: dict, mr: dict) -> dict:
        approved_by = [{"user": self._user_brief(u)} for u in mr["_approved_by"]]
        left = max(0, mr["_approvals_required"] - len(approved_by))
        return {"id": mr["id"], "iid": mr["iid"], "project_id": p["id"], "title": mr["title"],
                "description": mr["description"], "state": mr["state"],
                "created_at": mr["created_at"], "updated_at": mr["updated_at"],
                "merge_status": mr["merge_status"], "approved": left == 0,
                "approvals_required": mr["_approvals_required"], "approvals_left": left,
                "approved_by": approved_by, "user_has_approved": False,
                "user_can_approve": True}

    def closes_issues(self, p: dict, mr: dict) -> list[dict]:
        if mr["_closes"] is not None:
            iids = list(mr["_closes"])
        else:
            iids = []
            for m in CLOSING_RE.finditer(mr["description"] or ""):
                iids += [int(x) for x in re.findall(r"#(\d+)", m.group(1))]
        return [self.view_issue(p["_issues"][i]) for i in dict.fromkeys(iids) if i in p["_issues"]]
