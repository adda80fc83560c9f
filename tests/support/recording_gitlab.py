"""An in-memory stand-in for `tasks.adapters.gitlab.GitLabAdapter`, for handler unit tests.

Prow's fake GitHub client, for GitLab: a struct of dicts with the adapter's exact method
signatures (a test checks they stay in step) that records every side effect as a string in
`effects`, in the same format the HTTP fake uses:

    "group/proj#5:note_created"          "group/proj!3:label_added:bug"
    "group/proj#5:note_updated:1001"     "group/proj:job_retried:100->1000"
    "group/proj#5:emoji_awarded:1001:eyes"

(`#` for issues, `!` for merge requests.) Errors are the adapter's own typed errors, and
`fail_next(method, exc)` scripts one.

    gl = RecordingGitLab()
    pipe = gl.add_pipeline("group/proj", jobs=[{"name": "unit", "status": "failed"}])
    handle(event, gl)
    assert gl.effects == ["group/proj:job_retried:100->1000"]
"""

from __future__ import annotations

import copy
import itertools
import re
from collections import defaultdict
from typing import Any, Iterable

from tasks.adapters.gitlab import Forbidden, GitLabError, JobLog, NotFound

BOT = {"id": 1, "username": "devops-bot", "name": "DevOps Bot"}
_CLOSES = re.compile(r"(?i)\b(?:clos(?:e[sd]?|ing)|fix(?:e[sd]|ing)?|resolv(?:e[sd]?|ing))"
                     r":? +#(\d+)")


class RecordingGitLab:
    """Same public methods as GitLabAdapter; state in dicts; side effects in `effects`."""

    def __init__(self, *, dry_run: bool = False, max_log_bytes: int = 8 * 1024 * 1024) -> None:
        self.dry_run = dry_run
        self.max_log_bytes = max_log_bytes
        self.effects: list[str] = []
        self.calls: list[tuple[str, tuple, dict]] = []  # (method, args, kwargs), reads too
        self.user = dict(BOT)
        self.paths: dict[int, str] = {}
        self.pipelines: dict[int, dict] = {}
        self.jobs: dict[int, dict] = {}
        self.logs: dict[int, bytes] = {}
        self.test_reports: dict[int, dict] = {}
        self.issues: dict[tuple[str, int], dict] = {}
        self.mrs: dict[tuple[str, int], dict] = {}
        self.notes: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
        self.members: dict[tuple[str, int], int] = {}
        self.freezes: dict[str, list[dict]] = defaultdict(list)
        self.branches: dict[tuple[str, str], str] = {}
        self.deployments: dict[int, dict] = {}
        self._ids = itertools.count(1000)
        self._failures: dict[str, list[BaseException]] = defaultdict(list)

    # -- test helpers --------------------------------------------------------------------------
    def fail_next(self, method: str, exc: BaseException) -> None:
        """The next call of `method` raises `exc` (e.g. RateLimited("slow down", retry_after=5))."""
        self._failures[method].append(exc)

    def _enter(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        if self._failures.get(method):
            raise self._failures[method].pop(0)

    def path(self, project: Any) -> str:
        """Full path of a project given as path or id (ids get `project-<id>` unless named
        with add_project)."""
        if isinstance(project, int):
            return self.paths.setdefault(project, f"project-{project}")
        return project

    def add_project(self, path: str, id: int) -> None:
        self.paths[id] = path

    def add_pipeline(self, project: Any, ref: str = "main", status: str = "failed",
                     jobs: Iterable[dict] = (), sha: str = "a" * 40, id: int | None = None) -> dict:
        path = self.path(project)
        pid = id if id is not None else next(self._ids)
        pipe = {"id": pid, "project": path, "ref": ref, "sha": sha, "status": status,
                "web_url": f"https://gitlab.example/{path}/-/pipelines/{pid}"}
        self.pipelines[pid] = pipe
        made = [self.add_job(path, pid, **j) for j in jobs]
        return {"pipeline": dict(pipe), "jobs": made}

    def add_job(self, project: Any, pipeline_id: int, name: str, stage: str = "test",
                status: str = "failed", failure_reason: str | None = None,
                allow_failure: bool = False, log: bytes | str = b"",
                id: int | None = None) -> dict:
        path = self.path(project)
        pipe = self.pipelines[pipeline_id]
        jid = id if id is not None else next(self._ids)
        job = {"id": jid, "name": name, "stage": stage, "status": status,
               "failure_reason": failure_reason or ("script_failure" if status == "failed" else None),
               "allow_failure": allow_failure, "ref": pipe["ref"],
               "pipeline": {"id": pipeline_id, "ref": pipe["ref"], "sha": pipe["sha"]},
               "web_url": f"https://gitlab.example/{path}/-/jobs/{jid}", "user": dict(BOT),
               "started_at": None, "finished_at": None, "_project": path, "_retried": False}
        self.jobs[jid] = job
        self.logs[jid] = log.encode() if isinstance(log, str) else log
        return self._job_view(job)

    def add_issue(self, project: Any, iid: int, title: str = "issue", description: str = "",
                  labels: Iterable[str] = (), state: str = "opened") -> dict:
        path = self.path(project)
        self.issues[(path, iid)] = {"iid": iid, "id": next(self._ids), "title": title,
                                    "description": description, "labels": list(labels),
                                    "state": state, "project": path,
                                    "web_url": f"https://gitlab.example/{path}/-/issues/{iid}"}
        return dict(self.issues[(path, iid)])

    def add_mr(self, project: Any, iid: int, title: str = "mr", description: str = "",
               source_branch: str = "feature", target_branch: str = "main",
               labels: Iterable[str] = (), closes: Iterable[int] | None = None,
               approvals_required: int = 0, approved_by: Iterable[int] = ()) -> dict:
        path = self.path(project)
        self.mrs[(path, iid)] = {"iid": iid, "id": next(self._ids), "title": title,
                                 "description": description, "source_branch": source_branch,
                                 "target_branch": target_branch, "labels": list(labels),
                                 "state": "opened", "project": path,
                                 "_closes": None if closes is None else list(closes),
                                 "_approvals_required": approvals_required,
                                 "_approved_by": list(approved_by)}
        return self._public(self.mrs[(path, iid)])

    def add_note(self, project: Any, kind: str, iid: int, body: str,
                 author: dict | None = None, system: bool = False) -> dict:
        note = {"id": next(self._ids), "body": body, "author": dict(author or BOT),
                "system": system, "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z", "noteable_iid": iid}
        self.notes[(self.path(project), kind, iid)].append(note)
        return dict(note)

    def add_member(self, project: Any, user_id: int, access_level: int) -> None:
        self.members[(self.path(project), user_id)] = access_level

    def add_freeze_period(self, project: Any, freeze_start: str, freeze_end: str,
                          cron_timezone: str = "UTC") -> None:
        self.freezes[self.path(project)].append(
            {"id": next(self._ids), "freeze_start": freeze_start, "freeze_end": freeze_end,
             "cron_timezone": cron_timezone})

    # -- internals -------------------------------------------------------------------------------
    @staticmethod
    def _public(d: dict) -> dict:
        return copy.deepcopy({k: v for k, v in d.items() if not k.startswith("_")})

    def _job_view(self, job: dict) -> dict:
        out = self._public(job)
        if out["status"] != "failed":
            out.pop("failure_reason", None)
        return out

    def _ref(self, project: Any, kind: str, iid: int) -> str:
        return f"{self.path(project)}{'#' if kind == 'issue' else '!'}{iid}"

    def _noteable(self, project: Any, kind: str, iid: int) -> dict:
        if kind not in ("issue", "mr"):
            raise ValueError(f"kind must be 'issue' or 'mr', not {kind!r}")
        store = self.issues if kind == "issue" else self.mrs
        obj = store.get((self.path(project), iid))
        if obj is None:
            raise NotFound(f"404 {'Issue' if kind == 'issue' else 'Merge Request'} Not Found", 404)
        return obj

    def _write(self, record: str, result: dict) -> dict:
        if self.dry_run:
            return {"dry_run": True, "record": record}
        self.effects.append(record)
        return result

    def _set_labels(self, project: Any, kind: str, iid: int, new: list[str],
                    user: dict | None = None) -> dict:
        obj = self._noteable(project, kind, iid)
        ref = self._ref(project, kind, iid)
        added = [x for x in new if x not in obj["labels"]]
        removed = [x for x in obj["labels"] if x not in new]
        if not self.dry_run:
            obj["labels"] = list(dict.fromkeys(new))
            self.effects += [f"{ref}:label_added:{x}" for x in added]
            self.effects += [f"{ref}:label_removed:{x}" for x in removed]
            who = dict(user or self.user)
            events = obj.setdefault("_label_events", [])
            for action, names in (("add", added), ("remove", removed)):
                events += [{"id": len(events) + i + 1, "user": who, "action": action,
                            "label": {"name": x}, "created_at": "2026-01-01T00:00:00Z"}
                           for i, x in enumerate(names)]
        return self._public(obj)

    def human_relabel(self, project: Any, kind: str, iid: int, user: dict, add: Iterable[str] = (),
                      remove: Iterable[str] = ()) -> None:
        """A person changed the labels in GitLab's UI (tests): recorded as their label events."""
        obj = self._noteable(project, kind, iid)
        new = [x for x in obj["labels"] if x not in set(remove)] + [x for x in add if x not in obj["labels"]]
        self._set_labels(project, kind, iid, new, user=user)

    def label_events(self, project: Any, kind: str, iid: int) -> list[dict]:
        self._enter("label_events", project, kind, iid)
        return [dict(e) for e in self._noteable(project, kind, iid).get("_label_events", [])]

    # -- the adapter's API -------------------------------------------------------------------------
    def current_user(self) -> dict:
        self._enter("current_user")
        return dict(self.user)

    def get_project(self, project: Any) -> dict:
        self._enter("get_project", project)
        path = self.path(project)
        pid = next((i for i, p in self.paths.items() if p == path), None)
        return {"id": pid, "path_with_namespace": path, "default_branch": "main"}

    def access_level(self, project: Any, user_id: int) -> int:
        self._enter("access_level", project, user_id)
        return self.members.get((self.path(project), user_id), 0)

    def freeze_periods(self, project: Any) -> list[dict]:
        self._enter("freeze_periods", project)
        return copy.deepcopy(self.freezes[self.path(project)])

    def get_pipeline(self, project: Any, pipeline_id: int) -> dict:
        self._enter("get_pipeline", project, pipeline_id)
        pipe = self.pipelines.get(pipeline_id)
        if pipe is None or pipe["project"] != self.path(project):
            raise NotFound("404 Not found", 404)
        return self._public(pipe)

    def latest_pipeline(self, project: Any, ref: str) -> dict | None:
        self._enter("latest_pipeline", project, ref)
        path = self.path(project)
        found = [p for p in self.pipelines.values() if p["project"] == path and p["ref"] == ref]
        return self._public(max(found, key=lambda p: p["id"])) if found else None

    def pipeline_jobs(self, project: Any, pipeline_id: int,
                      scope: str | Iterable[str] | None = None) -> list[dict]:
        self._enter("pipeline_jobs", project, pipeline_id, scope=scope)
        scopes = [scope] if isinstance(scope, str) else (list(scope) if scope else None)
        return [self._job_view(j) for j in sorted(self.jobs.values(), key=lambda j: j["id"])
                if j["pipeline"]["id"] == pipeline_id and not j["_retried"]
                and (scopes is None or j["status"] in scopes)]

    def get_job(self, project: Any, job_id: int) -> dict:
        self._enter("get_job", project, job_id)
        job = self.jobs.get(job_id)
        if job is None or job["_project"] != self.path(project):
            raise NotFound("404 Job Not Found", 404)
        return self._job_view(job)

    def retry_job(self, project: Any, job_id: int) -> dict:
        self._enter("retry_job", project, job_id)
        job = self.jobs.get(job_id)
        if job is None or job["_project"] != self.path(project):
            raise NotFound("404 Job Not Found", 404)
        if job["status"] not in ("failed", "canceled", "success") or job["_retried"]:
            raise Forbidden("403 Forbidden - Job is not retryable", 403)
        if self.dry_run:
            return {"dry_run": True, "record": f"{self.path(project)}:job_retried:{job_id}"}
        new_id = next(self._ids)
        new = {**copy.deepcopy(job), "id": new_id, "status": "pending", "failure_reason": None,
               "web_url": job["web_url"].rsplit("/", 1)[0] + f"/{new_id}"}
        job["_retried"] = True
        self.jobs[new_id] = new
        self.logs[new_id] = b""
        return self._write(f"{self.path(project)}:job_retried:{job_id}->{new_id}",
                           self._job_view(new))

    def retry_pipeline(self, project: Any, pipeline_id: int) -> dict:
        self._enter("retry_pipeline", project, pipeline_id)
        pipe = self.get_pipeline(project, pipeline_id)
        return self._write(f"{self.path(project)}:pipeline_retried:{pipeline_id}", pipe)

    def job_log(self, project: Any, job_id: int) -> JobLog:
        self._enter("job_log", project, job_id)
        self.get_job(project, job_id)
        data = self.logs.get(job_id, b"")
        if len(data) <= self.max_log_bytes:
            return JobLog(data, 0)
        tail = data[-self.max_log_bytes:]
        nl = tail.find(b"\n")
        if 0 <= nl < len(tail) - 1:
            tail = tail[nl + 1:]
        return JobLog(tail, len(data) - len(tail))

    def test_report(self, project: Any, pipeline_id: int) -> dict:
        self._enter("test_report", project, pipeline_id)
        self.get_pipeline(project, pipeline_id)
        return copy.deepcopy(self.test_reports.get(pipeline_id, {
            "total_count": 0, "failed_count": 0, "test_suites": []}))

    def get_issue(self, project: Any, iid: int) -> dict:
        self._enter("get_issue", project, iid)
        return self._public(self._noteable(project, "issue", iid))

    def find_issues(self, project: Any, labels: Iterable[str] | None = None,
                    search: str | None = None, state: str | None = "opened") -> list[dict]:
        self._enter("find_issues", project, labels=labels, search=search, state=state)
        path = self.path(project)
        out = []
        for (p, _), i in sorted(self.issues.items(), key=lambda kv: -kv[0][1]):
            if p != path or (state not in (None, "all") and i["state"] != state):
                continue
            if labels and not all(x in i["labels"] for x in labels):
                continue
            if search and search.lower() not in (i["title"] + " " + i["description"]).lower():
                continue
            out.append(self._public(i))
        return out

    def create_issue(self, project: Any, title: str, description: str = "",
                     labels: Iterable[str] = ()) -> dict:
        self._enter("create_issue", project, title, description, labels)
        path = self.path(project)
        iid = max((i for p, i in self.issues if p == path), default=0) + 1
        if self.dry_run:
            return {"dry_run": True, "record": f"{path}#?:issue_created"}
        issue = self.add_issue(path, iid, title, description, labels)
        return self._write(f"{path}#{iid}:issue_created", issue)

    def update_issue(self, project: Any, iid: int, **fields: Any) -> dict:
        self._enter("update_issue", project, iid, **fields)
        obj = self._noteable(project, "issue", iid)
        ref = self._ref(project, "issue", iid)
        as_list = lambda v: v.split(",") if isinstance(v, str) else list(v or ())  # noqa: E731
        new = as_list(fields.pop("labels")) if "labels" in fields else list(obj["labels"])
        new += [x for x in as_list(fields.pop("add_labels", None)) if x not in new]
        drop = set(as_list(fields.pop("remove_labels", None)))
        self._set_labels(project, "issue", iid, [x for x in new if x not in drop])
        event = fields.pop("state_event", None)
        if not self.dry_run:
            for k, v in fields.items():
                obj[k] = v
                self.effects.append(f"{ref}:{k}_updated")
            if event == "close" and obj["state"] == "opened":
                obj["state"] = "closed"
                self.effects.append(f"{ref}:closed")
            elif event == "reopen" and obj["state"] == "closed":
                obj["state"] = "opened"
                self.effects.append(f"{ref}:reopened")
        return self._public(obj)

    def add_labels(self, project: Any, kind: str, iid: int, labels: Iterable[str]) -> dict:
        self._enter("add_labels", project, kind, iid, labels)
        obj = self._noteable(project, kind, iid)
        return self._set_labels(project, kind, iid,
                                obj["labels"] + [x for x in labels if x not in obj["labels"]])

    def remove_labels(self, project: Any, kind: str, iid: int, labels: Iterable[str]) -> dict:
        self._enter("remove_labels", project, kind, iid, labels)
        obj = self._noteable(project, kind, iid)
        drop = set(labels)
        return self._set_labels(project, kind, iid, [x for x in obj["labels"] if x not in drop])

    def relabel(self, project: Any, kind: str, iid: int, add: Iterable[str] = (),
                remove: Iterable[str] = ()) -> dict:
        self._enter("relabel", project, kind, iid, add, remove)
        obj = self._noteable(project, kind, iid)
        drop = set(remove)
        kept = [x for x in obj["labels"] if x not in drop]
        return self._set_labels(project, kind, iid, kept + [x for x in add if x not in kept])

    def get_mr(self, project: Any, mr_iid: int) -> dict:
        self._enter("get_mr", project, mr_iid)
        return self._public(self._noteable(project, "mr", mr_iid))

    def mr_closes_issues(self, project: Any, mr_iid: int) -> list[dict]:
        self._enter("mr_closes_issues", project, mr_iid)
        mr = self._noteable(project, "mr", mr_iid)
        iids = mr["_closes"] if mr["_closes"] is not None else [
            int(m) for m in _CLOSES.findall(mr["description"])]
        path = self.path(project)
        return [self._public(self.issues[(path, i)]) for i in iids if (path, i) in self.issues]

    def mr_approvals(self, project: Any, mr_iid: int) -> dict:
        self._enter("mr_approvals", project, mr_iid)
        mr = self._noteable(project, "mr", mr_iid)
        left = max(0, mr["_approvals_required"] - len(mr["_approved_by"]))
        return {"iid": mr_iid, "approved": left == 0, "approvals_left": left,
                "approvals_required": mr["_approvals_required"],
                "approved_by": [{"user": {"id": u}} for u in mr["_approved_by"]]}

    def create_mr(self, project: Any, source_branch: str, target_branch: str, title: str,
                  description: str = "", labels: Iterable[str] = (),
                  remove_source_branch: bool = True) -> dict:
        self._enter("create_mr", project, source_branch, target_branch, title, description,
                    labels, remove_source_branch)
        path = self.path(project)
        for (p, _), m in self.mrs.items():
            if (p == path and m["state"] == "opened" and m["source_branch"] == source_branch
                    and m["target_branch"] == target_branch):
                raise GitLabError("409 Another open merge request already exists", 409)
        if self.dry_run:
            return {"dry_run": True, "record": f"{path}!?:mr_created"}
        iid = max((i for p, i in self.mrs if p == path), default=0) + 1
        mr = self.add_mr(path, iid, title, description, source_branch, target_branch, labels)
        return self._write(f"{path}!{iid}:mr_created", mr)

    def list_notes(self, project: Any, kind: str, iid: int) -> list[dict]:
        self._enter("list_notes", project, kind, iid)
        self._noteable(project, kind, iid)
        return copy.deepcopy(self.notes[(self.path(project), kind, iid)])

    def create_note(self, project: Any, kind: str, iid: int, body: str) -> dict:
        self._enter("create_note", project, kind, iid, body)
        self._noteable(project, kind, iid)
        if self.dry_run:
            return {"dry_run": True, "record": f"{self._ref(project, kind, iid)}:note_created"}
        note = self.add_note(project, kind, iid, body, author=self.user)
        return self._write(f"{self._ref(project, kind, iid)}:note_created", note)

    def update_note(self, project: Any, kind: str, iid: int, note_id: int, body: str) -> dict:
        self._enter("update_note", project, kind, iid, note_id, body)
        self._noteable(project, kind, iid)
        note = next((n for n in self.notes[(self.path(project), kind, iid)]
                     if n["id"] == note_id), None)
        if note is None:
            raise NotFound("404 Note Not Found", 404)
        if note["author"]["id"] != self.user["id"]:
            raise Forbidden("403 Forbidden", 403)
        if not self.dry_run:
            note["body"] = body
        return self._write(f"{self._ref(project, kind, iid)}:note_updated:{note_id}", dict(note))

    def award_emoji(self, project: Any, kind: str, iid: int, note_id: int, name: str) -> dict:
        self._enter("award_emoji", project, kind, iid, note_id, name)
        self._noteable(project, kind, iid)
        return self._write(f"{self._ref(project, kind, iid)}:emoji_awarded:{note_id}:{name}",
                           {"id": next(self._ids), "name": name, "awardable_id": note_id,
                            "awardable_type": "Note", "user": dict(self.user)})

    def create_branch(self, project: Any, branch: str, ref: str) -> dict:
        self._enter("create_branch", project, branch, ref)
        path = self.path(project)
        if (path, branch) in self.branches:
            raise GitLabError("400 Branch already exists", 400)
        if not self.dry_run:
            self.branches[(path, branch)] = ref
        return self._write(f"{path}:branch_created:{branch}", {"name": branch})

    def create_commit(self, project: Any, branch: str, message: str, actions: list[dict],
                      start_branch: str | None = None) -> dict:
        self._enter("create_commit", project, branch, message, actions,
                    start_branch=start_branch)
        path = self.path(project)
        if not self.dry_run and (path, branch) not in self.branches:
            self.branches[(path, branch)] = start_branch or "main"
        sha = f"{next(self._ids):040x}"
        return self._write(f"{path}:commit_created:{branch}",
                           {"id": sha, "short_id": sha[:8], "title": message.splitlines()[0],
                            "message": message})

    def create_deployment(self, project: Any, environment: str, sha: str, ref: str,
                          status: str = "running", tag: bool = False) -> dict:
        self._enter("create_deployment", project, environment, sha, ref, status, tag)
        path = self.path(project)
        did = next(self._ids)
        dep = {"id": did, "status": status, "sha": sha, "ref": ref,
               "environment": {"name": environment}}
        if not self.dry_run:
            self.deployments[did] = {**dep, "_project": path}
        return self._write(f"{path}:deployment_created:{environment}:{status}", dep)

    def update_deployment(self, project: Any, deployment_id: int, status: str) -> dict:
        self._enter("update_deployment", project, deployment_id, status)
        dep = self.deployments.get(deployment_id)
        if dep is None:
            raise NotFound("404 Deployment Not Found", 404)
        if not self.dry_run:
            dep["status"] = status
        return self._write(f"{self.path(project)}:deployment_updated:{deployment_id}:{status}",
                           self._public(dep))

    def close(self) -> None:
        pass
