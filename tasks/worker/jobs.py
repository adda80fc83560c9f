"""Follow-on jobs (`j:<id>` items in the engine): work a handler asks for but does not do itself,
such as filing the fix issue for a failed build. The handler names the job and what it acts on;
the engine runs it once, with the same lease, back-off and error policy as deliveries."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from tasks.ci.fix_issue import fix_build
from tasks.ci.pipeline_fix.mr import propose
from tasks.ci.report import refresh_comment
from tasks.engine.items import Outcome, run_item
from tasks.incidents.rollback import JOB as INCIDENT_ROLLBACK
from tasks.incidents.rollback import follow as follow_incident_rollback
from tasks.platform import metrics
from tasks.platform.store import Store
from tasks.worker.celery_app import app

log = logging.getLogger("devops_agent.jobs")

JOB_TTL = 7 * 86400


def job_member(task_name: str, kwargs: dict[str, Any], key: str | None = None) -> str:
    what = key if key is not None else orjson.dumps(kwargs, option=orjson.OPT_SORT_KEYS,
                                                    default=str).decode()
    digest = hashlib.sha256(f"{task_name}\0{what}".encode()).hexdigest()[:32]
    return f"j:{digest}"


def _fix_build(rt: Any, **kwargs: Any) -> str:

    gitlab = rt.adapter("gitlab")
    if gitlab is None:
        return "skipped: GitLab is not configured"
    return fix_build(gitlab, Store(rt.redis), rt.settings, send_task=app.send_task, **kwargs)


def _pipeline_fix(rt: Any, **kwargs: Any) -> str:
    """One merge request per (project, job, kind) changing the CI configuration, then the
    failure comment that asked for it, so it links the merge request."""
    gitlab = rt.adapter("gitlab")
    if gitlab is None:
        return "skipped: GitLab is not configured"
    outcome = propose(gitlab, rt.redis, rt.adapter("config"), **kwargs)
    if kwargs.get("pipe"):
        refresh_comment(rt.context("", "pipeline_fix"), kwargs["pipe"])
    return outcome


def _incident_rollback(rt: Any, **kwargs: Any) -> Outcome:
    """Waits for an alert's automatic rollback to end (an Outcome to run again), then tells
    the incident (tasks/incidents/rollback.py)."""
    return follow_incident_rollback(rt.context("", "incidents"), **kwargs)


JOBS: dict[str, Callable[..., str | Outcome]] = {"devops_agent.fix_build": _fix_build,
                                                 "devops_agent.pipeline_fix": _pipeline_fix,
                                                 INCIDENT_ROLLBACK: _incident_rollback}


def run_job(rt: Any, ident: str) -> str:
    member = "j:" + ident

    def work(state: dict[str, str], attempt: int) -> Outcome:
        fn = JOBS.get(state.get("task", ""))
        if fn is None:
            return Outcome("invalid", detail=f"no job named {state.get('task')!r}")
        try:
            kwargs = orjson.loads(state.get("kwargs") or "{}")
        except orjson.JSONDecodeError as exc:
            return Outcome("invalid", detail=f"unreadable job arguments: {exc}")
        result = fn(rt, **kwargs)
        if isinstance(result, Outcome):  # a job that waits on something says when to look again
            return result
        return Outcome("done", detail=str(result)[:200])

    def finished(status: str, state: dict[str, str]) -> None:

        metrics.ITEMS_FINISHED.labels(kind="job", status=status).inc()

    return run_item(rt.schedule, member, work, ttl=JOB_TTL, on_finish=finished,
                    on_error=lambda error_kind: rt.metrics_error("job", error_kind))
