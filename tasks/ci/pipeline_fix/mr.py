"""`pipeline_fix`: open or update the one merge request per (project, job, kind).

Run as a follow-on job (tasks/worker/jobs.py) when detect.py saw a job fail often enough for one
infrastructure reason. Under a lock per (project, job, kind) it finds our earlier merge requests
for that job and kind (a hidden marker in the description), then:

* one is open: its description gets the latest evidence, and its branch a new commit only when
  the change grew (a second failure reason reached the threshold);
* the newest was closed less than `closed_cooldown_days` ago: nothing, a person said no;
* otherwise (none, merged, closed long ago): the CI configuration is read from the default
  branch, changed (edit.py), checked with GitLab's CI lint, committed to a new branch and
  proposed. A configuration that already does what the change would do is left alone, so the
  same change is never proposed twice.

What happened is kept per (project, job, kind) for the failure comment, which links the merge
request only once GitLab has created it. GitLab refusing for good (403: the bot may not push;
404: no CI file) is a reason said in the comment, not an error.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from tasks.ci.pipeline_fix import wording
from tasks.ci.pipeline_fix.detect import RETRY_REASONS, FixHistory, job_digest
from tasks.ci.pipeline_fix.edit import Change, job_key, merged_or_file, parse, plan_retry, plan_timeout
from tasks.ci.pipeline_fix.merged import Skip, current_timeout, load_merged
from tasks.gitlab.client import Forbidden, GitLabError, GitLabUnavailable, NotFound
from tasks.gitlab.comments import marker
from tasks.gitlab.durations import (
    DEFAULT_PROJECT_TIMEOUT,
    parse_duration,
    words,
)
from tasks.platform.store import Busy, Store

log = logging.getLogger("devops_agent.pipeline_fix")

PASSING_RUNS_READ = 200  # recent successful jobs read to see how long passing runs take


def subject(job_name: str, kind: str) -> str:
    return f"pipeline-fix:{kind}:{job_digest(job_name)}"


def branch_name(job_name: str, kind: str, generation: int = 0) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", job_name.lower()).strip("-")[:40] or "job"
    suffix = f"-{generation + 1}" if generation else ""
    return f"devops-agent/ci-{kind}-{slug}-{job_digest(job_name)[:6]}{suffix}"


def _ts(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def ci_path(project: dict) -> str:
    """The project's CI configuration file (Settings → CI/CD → General pipelines)."""
    path = str(project.get("ci_config_path") or "").strip() or ".gitlab-ci.yml"
    if "@" in path or "://" in path or ":" in path:
        raise Skip(f"the CI configuration is `{path}`, outside this project's repository")
    return path.lstrip("/")


def our_mrs(gitlab: Any, project: int, job_name: str, kind: str) -> list[dict]:
    """Our merge requests for (job, kind), newest first, found by the marker GitLab searches."""
    tag = marker(subject(job_name, kind))
    found = gitlab.find_mrs(project, search=f"devops-agent:{subject(job_name, kind)}",
                            state="all")
    return sorted((m for m in found if tag in (m.get("description") or "")),
                  key=lambda m: int(m.get("iid") or 0), reverse=True)


def _lint(gitlab: Any, project: int, content: str, ref: str, default: str) -> dict:
    if ref == default:
        return gitlab.ci_lint(project, content)
    return gitlab.ci_lint(project, content, ref=ref, dry_run=True)


def _lint_errors(answer: dict) -> str:
    errors = [str(e) for e in answer.get("errors") or []][:3]
    return "; ".join(errors)[:400] or "no reason given"


def _plan(gitlab: Any, cfg: Any, project: int, info: dict, path: str, ref: str, default: str,
          job_name: str, kind: str, reasons: list[str], failures: list[dict]) -> tuple[
              Change, dict, list[str]]:
    """The change on `ref`'s CI file (Skip when none is needed or safe), the file as read, and
    extra evidence lines."""
    try:
        current = gitlab.get_file(project, path, ref)
    except NotFound:
        raise Skip(f"there is no `{path}` on `{ref}`") from None
    text = str(current.get("content") or "")
    parse(text)  # not YAML, not a mapping: said before anything is sent
    lint = _lint(gitlab, project, text, ref, default)
    if not lint.get("valid"):
        raise Skip(f"`{path}` on `{ref}` does not pass GitLab's CI lint today "
                   f"({_lint_errors(lint)}); devops-agent changes only a valid configuration")
    merged = load_merged(lint.get("merged_yaml"))
    notes: list[str] = []
    if kind == "retry":
        change = plan_retry(text, merged, job_name, reasons, cfg.retry_max, path)
    else:
        key = job_key(text, merged, job_name, path)
        project_timeout = float(info.get("build_timeout") or DEFAULT_PROJECT_TIMEOUT)
        limit, where = current_timeout(merged_or_file(merged, parse(text), path), key,
                                       project_timeout)
        notes.append(f"Its limit today is {words(limit)} ({where}).")
        enforced = [f["limit"] for f in failures if f.get("limit")]
        if enforced and max(enforced) < limit - 1:
            raise Skip(f"the runner stopped `{job_name}` after {words(max(enforced))}, below its "
                       f"{words(limit)} timeout: the runner's maximum timeout caps it, so a "
                       "higher `timeout:` would change nothing")
        passing = _passing_durations(gitlab, project, job_name)
        if passing:
            longest = max(passing)
            if longest < cfg.near_limit * limit:
                raise Skip(f"passing runs of `{job_name}` take at most {words(longest)} of its "
                           f"{words(limit)} limit: when it runs out of time it is hanging, and "
                           "more time would not help")
            notes.append(f"Its {len(passing)} most recent passing runs took up to "
                         f"{words(longest)}, {round(100 * longest / limit)}% of the limit.")
        else:
            notes.append("No passing run of it was found to compare with.")
        change = plan_timeout(text, merged, job_name, project_timeout,
                              parse_duration(cfg.timeout_step) or 1800,
                              parse_duration(cfg.timeout_max) or 3 * 3600, path)
    answer = _lint(gitlab, project, change.content, ref, default)
    if not answer.get("valid"):
        raise Skip(f"the changed `{path}` would not pass GitLab's CI lint "
                   f"({_lint_errors(answer)}), so it was not proposed")
    return change, current, notes


def _passing_durations(gitlab: Any, project: int, job_name: str, keep: int = 20) -> list[float]:
    out: list[float] = []
    for job in gitlab.recent_jobs(project, ["success"], limit=PASSING_RUNS_READ):
        if job.get("name") == job_name and job.get("duration"):
            out.append(float(job["duration"]))
            if len(out) >= keep:
                break
    return out


def propose(gitlab: Any, redis: Any, config: Any, *, project: int, job_name: str, kind: str,
            pipe: dict[str, Any] | None = None, trigger_job: int | None = None,
            clock: Any = time.time) -> str:
    """Open, update or decline the merge request for (project, job, kind); returns what
    happened in a few words (and keeps it for the failure comment)."""
    cfg = config.pipeline_fixes
    history = FixHistory(redis, clock=clock)
    found = history.reasons(project, job_name, kind, cfg.window_seconds, cfg.threshold)
    if not cfg.enabled or kind not in cfg.kinds or not found:
        # The comment said one was asked for: it must not go on saying so.
        reason = ("pipeline fixes of this kind were switched off" if found else
                  f"fewer than {cfg.threshold} failures are left in the window")
        history.set_status(project, job_name, kind, {"state": "skipped", "reason": reason})
        return f"skipped: {reason}"
    reasons = [r for r in RETRY_REASONS if r in found] if kind == "retry" else list(found)
    store = Store(redis)
    with store.lock(f"pipeline-fix:{project}:{job_digest(job_name)}:{kind}", ttl=10, wait=60):
        try:
            status = _propose(gitlab, cfg, project, job_name, kind, reasons, found, clock)
        except Skip as skip:
            status = {"state": "skipped", "reason": str(skip)}
        except (Forbidden, NotFound) as exc:
            status = {"state": "skipped", "reason": _refused(exc)}
        except GitLabUnavailable:
            raise
        except GitLabError as exc:
            if exc.status in (400, 409, 422):
                status = {"state": "skipped", "reason": f"GitLab refused: {str(exc)[:300]}"}
            else:
                raise
    history.set_status(project, job_name, kind, status)
    log.info("pipeline fix %s: %s", status["state"], status.get("reason") or status.get("mr"),
             extra={"project": project, "job_name": job_name, "kind": kind})
    if status["state"] == "skipped":
        return f"skipped: {status['reason']}"[:200]
    return f"{status['state']} !{status.get('mr')}"


def _refused(exc: GitLabError) -> str:
    if isinstance(exc, Forbidden):
        return ("GitLab refused (403): the bot needs Developer access and may not push to "
                f"the branch ({str(exc)[:200]})")
    return f"GitLab answered 404 ({str(exc)[:200]})"


def _propose(gitlab: Any, cfg: Any, project: int, job_name: str, kind: str,
             reasons: list[str], found: dict[str, list[dict]], clock: Any) -> dict[str, Any]:
    info = gitlab.get_project(project)
    default = str(info.get("default_branch") or "main")
    web_url = str(info.get("web_url") or "")
    path = ci_path(info)
    tag = marker(subject(job_name, kind))
    mrs = our_mrs(gitlab, project, job_name, kind)
    latest = mrs[0] if mrs else None
    if latest is not None and latest.get("state") == "opened":
        return _update(gitlab, cfg, project, info, path, default, web_url, job_name, kind,
                       reasons, found, latest)
    if latest is not None and latest.get("state") in ("closed", "locked"):
        closed = _ts(latest.get("closed_at")) or _ts(latest.get("updated_at")) or clock()
        until = closed + cfg.closed_cooldown_days * 86400
        if clock() < until:
            raise Skip(f"[!{latest['iid']}]({latest.get('web_url')}) proposed this and was "
                       f"closed on {_day(closed)}; devops-agent does not propose it again "
                       f"before {_day(until)}")
    change, current, notes = _plan(gitlab, cfg, project, info, path, default, default,
                                   job_name, kind, reasons, _all(found))
    if latest is not None:
        notes.append(f"It follows [!{latest['iid']}]({latest.get('web_url')}) "
                     f"({latest.get('state')}).")
    description = "\n".join([tag, wording.head(change, path, notes), "",
                             wording.evidence(cfg, web_url, job_name, found, True)])
    branch = branch_name(job_name, kind, len(mrs))
    _commit(gitlab, project, branch, default, path, change, current,
            f"ci: {wording.title(change)[4:]}\n\nProposed by devops-agent: {job_name} failed "
            f"{sum(len(v) for v in found.values())} times in {cfg.window_days} day(s) for "
            f"{', '.join(found)}.")
    mr = _create_mr(gitlab, project, branch, default, wording.title(change), description,
                    list(cfg.labels))
    return {"state": "opened", "mr": mr.get("iid"), "url": mr.get("web_url"),
            "what": wording.what(change), "count": sum(len(v) for v in found.values())}


def _all(found: dict[str, list[dict]]) -> list[dict]:
    return [f for fs in found.values() for f in fs]


def _commit(gitlab: Any, project: int, branch: str, start: str, path: str, change: Change,
            current: dict, message: str) -> None:
    """Commit the change on `branch` (created from `start`), once: a branch left by an earlier
    attempt that already carries it gets no second commit."""
    action: dict[str, Any] = {"action": "update", "file_path": path, "content": change.content}
    try:
        there = gitlab.get_file(project, path, branch)
    except NotFound:
        there = None
    try:
        if there is not None:
            if there.get("content") == change.content:
                return
            action["last_commit_id"] = there.get("last_commit_id")
            gitlab.create_commit(project, branch, message, [action])
            return
        # The file must still be as read: a push in between would otherwise be undone here.
        action["last_commit_id"] = current.get("last_commit_id")
        gitlab.create_commit(project, branch, message, [action], start_branch=start)
    except GitLabError as exc:
        if exc.status == 400 and "changed since" in str(exc):
            # Someone pushed meanwhile: the engine runs the job again, on a fresh read.
            raise Busy(f"{path} changed while devops-agent was editing it") from None
        raise


def _create_mr(gitlab: Any, project: int, branch: str, target: str, title: str,
               description: str, labels: list[str]) -> dict:
    """Create the merge request at most once: a POST that timed out or got a 5xx may have been
    applied, and a 409 means one is open for the branch; both are resolved by reading."""
    try:
        return gitlab.create_mr(project, branch, target, title, description, labels)
    except (GitLabUnavailable, GitLabError) as exc:
        if not isinstance(exc, GitLabUnavailable) and exc.status != 409:
            raise
        existing = gitlab.find_mrs(project, source_branch=branch, state="opened")
        if existing:
            return existing[0]
        raise


def _update(gitlab: Any, cfg: Any, project: int, info: dict, path: str, default: str,
            web_url: str, job_name: str, kind: str, reasons: list[str],
            found: dict[str, list[dict]], mr: dict) -> dict[str, Any]:
    """The open merge request: the latest evidence, and a new commit only if the change grew."""
    branch = str(mr.get("source_branch"))
    description = str(mr.get("description") or "")
    head, _, _ = description.partition(wording.EVIDENCE)
    what = None
    try:
        change, current, notes = _plan(gitlab, cfg, project, info, path, branch, default,
                                       job_name, kind, reasons, _all(found))
    except Skip:
        change = None  # the branch already does it (the usual case) or cannot take more
    if change is not None:
        _commit(gitlab, project, branch, default, path, change, current,
                f"ci: {wording.title(change)[4:]}\n\nMore failures of {job_name}: "
                f"{', '.join(found)}.")
        head = "\n".join([marker(subject(job_name, kind)), wording.head(change, path, notes), ""])
        what = wording.what(change)
    new = head.rstrip("\n") + "\n\n" + wording.evidence(cfg, web_url, job_name, found, True)
    if new != description:
        gitlab.update_mr(project, int(mr["iid"]), description=new,
                         **({"title": wording.title(change)} if change is not None else {}))
    return {"state": "updated", "mr": mr.get("iid"), "url": mr.get("web_url"),
            "what": what or wording.what_from(mr), "count": sum(len(v) for v in found.values())}
