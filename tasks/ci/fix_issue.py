"""`fix_build`: one issue per (project, ref, rule) for whoever fixes builds, with the evidence.

Filed from a follow-on task so the triage task stays short. When FIX_QUEUE is set, the same
request is also published as a Celery task `devops_agent.fix_request` on that queue, for another
agent (a code-fixing bot) to pick up; it carries ids and the verdict, never secrets.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.gitlab.comments import marker
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.fix")


def fix_issue_body(ref: str, sha: str, pipeline: int, job: dict[str, Any],
                   verdict: dict[str, Any]) -> str:
    rule = verdict.get("rule", "none")
    lines = [marker(f"fix:{ref}:{rule}"),
             f"Job **{job['name']}** failed on `{ref}` ({sha[:8]}), pipeline #{pipeline}.",
             "", f"**{verdict.get('category')}** — rule `{rule}`: {verdict.get('description', '')}",
             ""]
    evidence = verdict.get("evidence") or []
    if evidence:
        lines.append("```")
        lines += [f"{e['line']}: {str(e['text'])[:300]}".replace("```", "'''") for e in evidence]
        lines.append("```")
    if verdict.get("next_steps"):
        lines += ["", "**Next steps**", "", str(verdict["next_steps"])]
    return "\n".join(lines)


def fix_build(gitlab: Any, store: Store, settings: Any, *, project: int, ref: str, sha: str,
              pipeline: int, job: dict[str, Any], verdict: dict[str, Any],
              send_task: Any) -> str:
    """Create or update the fix issue; returns 'created', 'updated' or 'unchanged'."""
    rule = verdict.get("rule", "none")
    key = f"fix:{project}:{ref}:{rule}"
    title = f"CI {verdict.get('category', 'failure').replace('_', ' ')} on {ref}: {job['name']} ({rule})"
    body = fix_issue_body(ref, sha, pipeline, job, verdict)
    labels = [*settings.fix_labels, settings.label_category_prefix + str(verdict.get("category"))]
    with store.lock(key):
        iid = store.get_map(key) or _find_existing(gitlab, project, settings, ref, rule)
        if iid:
            issue = gitlab.get_issue(project, int(iid))
            if issue.get("state") == "opened":
                outcome = "unchanged"
                if issue.get("description") != body:
                    gitlab.update_issue(project, int(iid), description=body)
                    outcome = "updated"
                store.set_map(key, str(iid))
                _publish(settings, store, send_task, project, int(iid), ref, sha, pipeline, job, verdict)
                return outcome
        issue = gitlab.create_issue(project, title, body, labels)
        if issue.get("iid") is not None and not issue.get("dry_run"):
            store.set_map(key, str(issue["iid"]))
        _publish(settings, store, send_task, project, issue.get("iid"), ref, sha, pipeline, job, verdict)
        return "created"


def _find_existing(gitlab: Any, project: int, settings: Any, ref: str, rule: str) -> str | None:
    tag = marker(f"fix:{ref}:{rule}")
    # search= narrows the list to this (ref, rule) server-side; the tag check below stays exact.
    for issue in gitlab.find_issues(project, labels=list(settings.fix_labels) or None,
                                    search=f"devops-agent:fix:{ref}:{rule}"):
        if tag in (issue.get("description") or ""):
            return str(issue["iid"])
    return None


def _publish(settings: Any, store: Store, send_task: Any, project: int, iid: Any, ref: str,
             sha: str, pipeline: int, job: dict[str, Any], verdict: dict[str, Any]) -> None:
    if not settings.fix_queue or settings.dry_run:
        return
    if not store.once(f"fix-request:{project}:{pipeline}:{job['name']}"):
        return
    send_task("devops_agent.fix_request", kwargs={
        "project": project, "issue_iid": iid, "ref": ref, "sha": sha, "pipeline": pipeline,
        "job": job, "verdict": verdict}, queue=settings.fix_queue)
