"""Failed CI jobs: classify each, decide (retry / hand off a fix / report), explain on the issues.

Plain functions over narrow interfaces (the GitLab adapter, the rules table, the store), called
by the pipeline and job handlers. Every write is guarded so that hearing of the same failure
again (a resent webhook, a Job Hook and a Pipeline Hook for one job, a retried task) changes
nothing: a job id is retried at most once, a fix is handed off once per pipeline and job, and the
comment is edited in place and skipped when unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from tasks.ci.corrections import Corrections
from tasks.ci.history import FailureHistory
from tasks.ci.linking import MAX_LINKED_ISSUES, linked, mr_iid_from_ref
from tasks.ci.pipeline_fix import comment_sentence, observe
from tasks.ci.rules.classifier import Classifier
from tasks.gitlab.client import Forbidden, GitLabError, GitLabUnavailable, NotFound
from tasks.gitlab.comments import marker, upsert_comment
from tasks.gitlab.facts import check_project, project_allowed
from tasks.platform import metrics
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.triage")

# Prow refused blind retries of test failures because they hide flakes; PyTorch never retries
# build, test or lint steps. A rule may ask for a retry; these categories never get one.
NEVER_RETRY = {"compile_error", "test_failure", "lint_failure", "security_scan_failure"}
CODE_FAILURES = NEVER_RETRY | {"dependency_resolution"}
# A pipeline's failed jobs read per event: each costs a log read; a pipeline with more failed
# jobs than this is an outage (OUTAGE_JOB_THRESHOLD is far lower) and is reported, not read.
MAX_FAILED_JOBS = 50


@dataclass(frozen=True)
class FailedJob:
    id: int
    name: str
    stage: str = ""
    failure_reason: str | None = None


@dataclass(frozen=True)
class PipelineRef:
    project: int
    pipeline: int
    ref: str
    sha: str
    mr_iid: int | None = None
    commit_message: str | None = None
    project_path: str | None = None
    default_branch: str | None = None


def not_actionable(ctx: Any, project_id: int, path: str | None = None) -> str | None:
    """Why a handler must leave this project alone, or None. The body's path is only a cheap
    first filter; the allow-list and the secret's binding are checked against the project as
    GitLab's API describes it (tasks/gitlab/facts.py)."""
    if path and not project_allowed(ctx.settings, project_id, path) \
            and not any(e == str(project_id) for e in ctx.settings.gitlab_projects):
        return "project is not in GITLAB_PROJECTS"
    return check_project(ctx, project_id)


def pipeline_ref(event: Any) -> PipelineRef:
    """The PipelineRef a Pipeline Hook claims (tests; the handlers use verified_pipeline)."""
    attrs = event.object_attributes
    return PipelineRef(project=event.project.id, pipeline=attrs.id, ref=attrs.ref or "",
                       sha=attrs.sha or "",
                       mr_iid=event.merge_request.iid if event.merge_request else None,
                       commit_message=event.commit.message if event.commit else None,
                       project_path=event.project.path_with_namespace,
                       default_branch=event.project.default_branch)


def verified_pipeline(ctx: Any, project: int, pipeline: int,
                      mr_hint: int | None = None) -> tuple[PipelineRef, dict[str, Any]]:
    """The pipeline as GitLab's API has it: (PipelineRef, the API's pipeline). Ref, SHA and status come
    from the pipeline, the commit message from the commit, the default branch from the
    project; the body's merge request is kept only when GitLab confirms it is this ref's."""

    raw = ctx.gitlab.get_pipeline(project, pipeline)
    ref, sha = str(raw.get("ref") or ""), str(raw.get("sha") or "")
    mr_iid = mr_iid_from_ref(ref)
    if mr_iid is None and mr_hint is not None:
        try:
            if ctx.gitlab.get_mr(project, mr_hint).get("source_branch") == ref:
                mr_iid = mr_hint
        except NotFound:
            pass
    message = None
    if sha:
        try:
            message = ctx.gitlab.get_commit(project, sha).get("message")
        except NotFound:
            pass
    facts = ctx.project
    return PipelineRef(project=project, pipeline=pipeline, ref=ref, sha=sha, mr_iid=mr_iid,
                       commit_message=message, project_path=facts.path if facts else None,
                       default_branch=facts.default_branch if facts else None), raw


def triage(ctx: Any, pipe: PipelineRef, failed: list[FailedJob]) -> list[dict[str, Any]]:
    """Classify and react to `failed` jobs of one pipeline; then refresh comment and labels."""
    settings, gitlab = ctx.settings, ctx.gitlab
    store = Store(ctx.redis)
    store.record_pipeline(pipe.project, pipe.ref, pipe.pipeline, {"status": "failed", "sha": pipe.sha})
    known = {row["name"]: row for row in store.job_rows(pipe.project, pipe.pipeline)}
    total_failed = max(len(failed), sum(1 for r in known.values() if r.get("status") == "failed"))
    outage = total_failed > settings.outage_job_threshold
    rows = []
    for job in failed:
        prior = known.get(job.name)
        if prior and prior.get("job_id") == job.id:
            rows.append(prior)  # this very job was already triaged (the other hook kind)
            continue
        verdict = classify_job(ctx, pipe.project, job)
        metrics.JOB_FAILURES.labels(category=verdict["category"]).inc()
        row = {"name": job.name, "stage": job.stage, "job_id": job.id, "status": "failed",
               "failure_reason": job.failure_reason, **verdict}
        row.update(react(ctx, store, pipe, job, verdict, outage=outage, failed_count=total_failed))
        remember(ctx, pipe, job, row)
        # The same job failing again and again for one infrastructure reason: a CI change.
        observe(ctx, pipe, job, row, outage=outage)
        store.put_job_row(pipe.project, pipe.pipeline, row)
        rows.append(row)
        ctx.decide(row["action_kind"], job=job.id, name=job.name, category=row["category"],
                   rule=row["rule"], what=row["action"])
    store.record_failed_sha(pipe.project, pipe.sha, [j.name for j in failed], "jobs")
    if any(r["category"] in ("test_failure", "flaky_test") for r in rows):
        store.record_failed_sha(pipe.project, pipe.sha, failed_tests(gitlab, pipe), "tests")
    explain(ctx, store, pipe, passed=False)
    return rows


def classify_job(ctx: Any, project: int, job: FailedJob) -> dict[str, Any]:
    """The job's log through the layered classifier; the verdict as a plain dict for the row."""

    truncated = 0
    try:
        joblog = ctx.gitlab.job_log(project, job.id)
        chunks, truncated = [joblog.data], joblog.truncated_bytes
    except GitLabError as exc:
        # A missing log still classifies on failure_reason; say so rather than fail the task.
        log.warning("job log unavailable: %s", exc, extra={"job": job.id})
        chunks = []
    verdict = Classifier(ctx.rules, Corrections(ctx.redis)).classify(
        chunks, failure_reason=job.failure_reason, job_name=job.name, stage=job.stage)
    # Line numbers count from the start of the tail we read when the log was truncated.
    evidence = [{"line": e.line, "text": e.text, "section": e.section}
                for e in verdict.evidence[:3]]
    return {"category": verdict.category, "rule": verdict.rule_id or "none",
            "layer": verdict.layer, "confidence": verdict.confidence, "why": verdict.reason,
            "description": verdict.description, "next_steps": verdict.next_steps,
            "reaction": verdict.reaction.kind if verdict.may_retry or
            verdict.reaction.kind != "retry" else "none",
            "max_retries": verdict.reaction.max_retries,
            "rule_labels": list(verdict.reaction.labels), "evidence": evidence,
            "error_lines": [{"line": ln.number, "text": ln.text[:400]}
                            for ln in verdict.error_lines],
            "exit_code": verdict.exit_code, "tool": verdict.tool,
            "command": verdict.failing_command.text if verdict.failing_command else None,
            "signature": verdict.signature, "signature_line": verdict.signature_line,
            "original_category": verdict.original_category,
            "also_matched": list(verdict.also_matched), "log_truncated_bytes": truncated}


def remember(ctx: Any, pipe: PipelineRef, job: FailedJob, row: dict[str, Any]) -> None:
    """Signature history for "similar failures", and unknown failures as examples to learn from."""
    FailureHistory(ctx.redis).record(row["signature"], project=pipe.project,
                                     pipeline=pipe.pipeline, job=job.id, sha=pipe.sha,
                                     job_name=job.name, ref=pipe.ref,
                                     default_branch=pipe.default_branch)
    if row["category"] == "unknown":
        Corrections(ctx.redis).unknown(row["signature"], example_of(pipe, job, row))


def example_of(pipe: PipelineRef, job: FailedJob, row: dict[str, Any]) -> dict[str, Any]:
    """A failure as a labelled example: where it happened and the lines a person would read."""
    lines = [e["text"] for e in row.get("evidence") or []]
    lines += [e["text"] for e in row.get("error_lines") or [] if e["text"] not in lines]
    return {"project": pipe.project, "project_path": pipe.project_path,
            "pipeline": pipe.pipeline, "job": job.id, "job_name": job.name, "stage": job.stage,
            "failure_reason": job.failure_reason, "classified_as": row["category"],
            "rule": row.get("rule"), "layer": row.get("layer"), "command": row.get("command"),
            "lines": lines}


def react(ctx: Any, store: Store, pipe: PipelineRef, job: FailedJob, verdict: dict[str, Any], *,
          outage: bool, failed_count: int) -> dict[str, Any]:
    """Retry, hand off, or only report; returns the row's action fields."""
    settings = ctx.settings
    category, rule = verdict["category"], verdict["rule"]
    budget = min(settings.retry_budget, verdict["max_retries"] or settings.retry_budget)
    if verdict["reaction"] == "retry" and category not in NEVER_RETRY:
        if outage:
            return _action("report", f"not retried: {failed_count} jobs failed at once "
                                     "(looks like an outage, not a flake)")
        if budget <= 0:
            return _action("report", "not retried: retry budget is 0")
        projects = store.breaker_hit(rule, pipe.project, settings.breaker_window_seconds)
        if projects > settings.breaker_projects:
            incident = open_incident(ctx, store, rule, category, projects)
            return _action("report", f"not retried: rule {rule} is failing in {projects} projects "
                                     f"at once (incident {incident})")
        attempt, fresh = store.claim_retry(pipe.project, pipe.pipeline, job.name, job.id, budget)
        if attempt == 0:
            return _action("report", f"not retried: retry budget used ({budget} of {budget})")
        if settings.dry_run:
            if fresh:
                store.release_retry(pipe.project, pipe.pipeline, job.name, job.id, attempt)
            return _action("retry", f"would retry, attempt {attempt} of {budget} (dry run)")
        # Whether this call took the claim or an earlier attempt did (and may have died before
        # or after its POST), GitLab says whether the retry exists; the comment says only that.
        try:
            # Two deliveries of one pipeline (a resend, the reconcile pass) must not both find
            # "no retry yet" while the other's POST is in flight.
            with store.lock(f"retry:{pipe.project}:{job.id}"):
                new_job = ensure_retried(ctx, pipe, job)
        except RetryRefused as refused:
            store.release_retry(pipe.project, pipe.pipeline, job.name, job.id, attempt)
            metrics.EFFECTS_REFUSED.labels(effect="retry_job").inc()
            return _action("report", f"could not retry `{job.name}`: {refused}")
        return _action("retry", f"retried, attempt {attempt} of {budget}",
                       new_job=new_job.get("id"))
    if category in NEVER_RETRY or verdict["reaction"] == "fix":
        handed = hand_off_fix(ctx, store, pipe, job, verdict)
        reason = category.replace("_", " ")
        return _action("fix", f"not retried: {reason}; {handed}")
    if verdict["reaction"] == "retry":
        return _action("report", f"not retried: {category.replace('_', ' ')}")
    return _action("report", "not retried: " + (category.replace("_", " ") if category != "unknown"
                                                else "no rule matched"))


class RetryRefused(Exception):
    """GitLab refused a job retry for good (str: why, in words for the comment)."""


def _retried_as(gitlab: Any, pipe: PipelineRef, job: FailedJob) -> dict[str, Any] | None:
    """The job's retry, if GitLab has one: the pipeline's latest job of that name is newer."""
    for other in gitlab.pipeline_jobs(pipe.project, pipe.pipeline):
        if other.get("name") == job.name and int(other.get("id") or 0) > job.id:
            return other
    return None


def ensure_retried(ctx: Any, pipe: PipelineRef, job: FailedJob) -> dict[str, Any]:
    """The job's retry, made at most once: an existing one is returned, an ambiguous POST
    (timeout, 5xx: it may have been applied) is resolved by reading, never by re-sending, and
    a 403 for a job that was retried meanwhile is that retry."""

    gitlab = ctx.gitlab
    existing = _retried_as(gitlab, pipe, job)
    if existing is not None:
        return existing
    try:
        return gitlab.retry_job(pipe.project, job.id)
    except GitLabUnavailable:
        existing = _retried_as(gitlab, pipe, job)
        if existing is not None:
            return existing
        raise  # not applied: transient, the delivery runs again and completes the claim
    except Forbidden as exc:
        existing = _retried_as(gitlab, pipe, job)
        if existing is not None:
            return existing
        raise RetryRefused(_why_forbidden(ctx, pipe, "retry a job", exc)) from None


def _why_forbidden(ctx: Any, pipe: PipelineRef, what: str, exc: Exception) -> str:
    """A 403 in words a person can act on: the bot's access, when that is the reason."""
    from tasks.deploy.gates import LEVEL_NAMES

    try:
        bot = ctx.gitlab.current_user()
        level = int(ctx.gitlab.access_level(pipe.project, int(bot["id"])))
    except (GitLabError, KeyError, TypeError, ValueError):
        level = None
    where = pipe.project_path or f"project {pipe.project}"
    if level is not None and level < 30:
        have = LEVEL_NAMES.get(level, "no") if level else "no"
        return (f"the bot has {have} access to {where} and needs Developer to {what}; "
                "a Maintainer can raise it in Project information → Members")
    return f"GitLab refused ({str(exc)[:200]})"


def _action(kind: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"action_kind": kind, "action": text, **extra}


def hand_off_fix(ctx: Any, store: Store, pipe: PipelineRef, job: FailedJob,
                 verdict: dict[str, Any]) -> str:
    """Queue `fix_build` once per (pipeline, job name): it files or updates the fix issue."""
    if ctx.settings.dry_run:
        return "would hand off a fix task (dry run)"
    # Keyed by what it acts on: a redelivered pipeline asks again and the engine runs it once.
    ctx.enqueue("devops_agent.fix_build", {
        "project": pipe.project, "ref": pipe.ref, "sha": pipe.sha, "pipeline": pipe.pipeline,
        "job": {"id": job.id, "name": job.name, "stage": job.stage}, "verdict": verdict,
    }, key=f"fix:{pipe.project}:{pipe.pipeline}:{job.name}")
    return "handed off as a fix task"


def open_incident(ctx: Any, store: Store, rule: str, category: str, projects: int) -> str:
    """One incident issue per rule while its breaker is open."""
    target = ctx.settings.incident_project
    if not target or ctx.settings.dry_run:
        return "not filed: set INCIDENT_PROJECT" if not target else "(dry run)"
    key = f"incident:{rule}"
    body = (f"{marker('incident:' + rule)}\nRule `{rule}` ({category}) fired in {projects} "
            f"projects within {ctx.settings.breaker_window_seconds // 60} minutes, so devops-agent "
            f"stopped retrying it.\n\nProjects: {', '.join(store.breaker_projects(rule))}\n")
    with store.lock(key):
        iid = store.get_map(key)
        if iid:
            ctx.gitlab.update_issue(target, int(iid), description=body)
            return f"#{iid}"
        issue = ctx.gitlab.create_issue(target, f"devops-agent: {rule} is failing in many "
                                                f"projects", body, ["devops-agent:incident"])
        store.set_map(key, str(issue["iid"]), ttl=ctx.settings.breaker_window_seconds * 6)
        return f"#{issue['iid']}"


def failed_tests(gitlab: Any, pipe: PipelineRef) -> list[str]:

    try:
        report = gitlab.test_report(pipe.project, pipe.pipeline)
    except GitLabError:
        return []
    names = []
    for suite in report.get("test_suites", []) or []:
        for case in suite.get("test_cases", []) or []:
            if case.get("status") in ("failed", "error"):
                names.append(f"{case.get('classname') or suite.get('name')}::{case.get('name')}")
    return names[:200]


def passed(ctx: Any, pipe: PipelineRef) -> str:
    """A pipeline succeeded: record flakes for its SHA and flip the ref's comment and labels."""
    store = Store(ctx.redis)
    history = FailureHistory(ctx.redis)
    failed_jobs = store.failed_on_sha(pipe.project, pipe.sha, "jobs")
    if failed_jobs:
        store.mark_flaky(pipe.project, sorted(failed_jobs), "jobs", pipe.sha)
        store.mark_flaky(pipe.project, sorted(store.failed_on_sha(pipe.project, pipe.sha, "tests")),
                         "tests", pipe.sha)
        for name in failed_jobs:
            history.passed_on_retry(project=pipe.project, sha=pipe.sha, job_name=name)
    if pipe.default_branch and pipe.ref == pipe.default_branch:
        history.trunk_passed(pipe.project)
    before = store.ref_state(pipe.project, pipe.ref)
    if not store.record_pipeline(pipe.project, pipe.ref, pipe.pipeline,
                                 {"status": "success", "sha": pipe.sha}):
        return "older pipeline"
    if before is None or before.get("status") != "failed":
        return "nothing to update"
    explain(ctx, store, pipe, passed=True, failed_pipeline=before["pipeline"])
    return "updated"


def explain(ctx: Any, store: Store, pipe: PipelineRef, *, passed: bool,
            failed_pipeline: int | None = None) -> None:
    """Refresh the one comment per linked issue (or the MR) and the CI labels."""
    settings, gitlab = ctx.settings, ctx.gitlab
    targets, overflow = linked(gitlab, pipe.project, ref=pipe.ref, mr_iid=pipe.mr_iid,
                               commit_message=pipe.commit_message)
    if not targets:
        ctx.decide("no-comment", reason="no linked issue or merge request", ref=pipe.ref)
        return
    rows = store.job_rows(pipe.project, failed_pipeline or pipe.pipeline)
    history = FailureHistory(ctx.redis)
    similar = {} if passed else {
        r["name"]: history.similar(r["signature"], project=pipe.project, ref=pipe.ref,
                                   default_branch=pipe.default_branch).sentence(pipe.default_branch)
        for r in rows if r.get("signature")}
    fixes = {} if passed else {r["name"]: comment_sentence(ctx.redis, pipe.project, r)
                               for r in rows}
    body = render(pipe, rows, passed=passed, failed_pipeline=failed_pipeline,
                  flaky_jobs=store.flaky(pipe.project, "jobs"),
                  flaky_tests=store.flaky(pipe.project, "tests"), similar=similar,
                  fixes={k: v for k, v in fixes.items() if v})
    if overflow:
        body += (f"\n\n<sub>{overflow} more linked issue(s) were not commented on: at most "
                 f"{MAX_LINKED_ISSUES} per pipeline.</sub>")
    categories = {r["category"] for r in rows if r.get("status") == "failed"}
    category_labels = [settings.label_category_prefix + c for c in sorted(categories)]
    rule_labels = sorted({label for r in rows for label in r.get("rule_labels", [])})
    thread = orjson.dumps({**asdict(pipe), "pipeline": failed_pipeline or pipe.pipeline,
                           "passed": passed})
    for kind, iid in targets:
        outcome = upsert_comment(gitlab, store, pipe.project, kind, iid, f"ci:{pipe.ref}", body)
        # What this thread's comment reports, for `/devops classify` written under it.
        ctx.redis.set(thread_key(pipe.project, kind, iid), thread, ex=90 * 86400)
        # The cause labels we put on this target before, so stale ones go without reading it.
        ours_key = f"da:labelled:{pipe.project}:{kind}:{iid}"
        before = {m.decode() for m in ctx.redis.smembers(ours_key)}
        now = set() if passed else {*category_labels, *rule_labels}
        if passed:
            gitlab.relabel(pipe.project, kind, iid, add=[settings.label_passed],
                           remove=sorted({settings.label_failed, *before}))
        else:
            gitlab.relabel(pipe.project, kind, iid, add=[settings.label_failed, *sorted(now)],
                           remove=sorted({settings.label_passed, *(before - now)}))
        pipe_ = ctx.redis.pipeline(transaction=True)
        pipe_.delete(ours_key)
        if now:
            pipe_.sadd(ours_key, *now)
            pipe_.expire(ours_key, 90 * 86400)
        pipe_.execute()
        ctx.decide("comment", target=f"{kind}:{iid}", outcome=outcome, passed=passed)


def thread_key(project: int, kind: str, iid: int) -> str:
    return f"da:ci-thread:{project}:{kind}:{iid}"


def thread_pipeline(redis: Any, project: int, kind: str, iid: int) -> tuple[PipelineRef, bool] | None:
    """The pipeline the CI comment in this issue or MR reports, and whether a later one passed."""
    raw = redis.get(thread_key(project, kind, iid))
    if raw is None:
        return None
    data = orjson.loads(raw)
    passed = bool(data.pop("passed", False))
    return PipelineRef(**data), passed


def _line(text: Any, limit: int) -> str:
    """One line of our own text (its code spans kept), bounded."""
    out = str(text or "").replace("\r", " ").replace("\n", " ")
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _cell(text: Any, limit: int = 120) -> str:
    """Markdown-table-safe: no pipes or newlines, backticks neutralised, bounded length."""
    s = str(text or "").replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    s = s.replace("`", "'")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _why(row: dict[str, Any]) -> str:
    """The layer that decided, in a table cell: which rule, or what the inference rests on."""
    layer, rule = row.get("layer", "rules"), row.get("rule")
    if layer == "rules":
        return f"rule `{_cell(rule, 40)}`"
    if layer == "gitlab":
        return "GitLab's job fields" + (f", rule `{_cell(rule, 40)}`" if rule and rule != "none" else "")
    if layer == "context":
        return "inferred from " + (f"`$ {_cell(row.get('command'), 50)}`" if row.get("command")
                                   else "the job and stage names")
    if layer == "learned":
        return "corrected by a person"
    return "no rule matched"


def _lines_cell(row: dict[str, Any], limit: int = 3) -> str:
    """The lines that decided, then the likely failing lines: what a person should read first."""
    shown: list[str] = []
    numbers: set[int] = set()
    for e in [*(row.get("evidence") or []), *(row.get("error_lines") or [])]:
        if e["line"] in numbers or len(shown) >= limit:
            continue
        numbers.add(e["line"])
        shown.append(f"L{e['line']}: `{_cell(e['text'], 100)}`")
    if not shown:
        return _cell(row.get("failure_reason") or "the log was empty")
    return "<br>".join(shown)


def render(pipe: PipelineRef, rows: list[dict[str, Any]], *, passed: bool,
           failed_pipeline: int | None, flaky_jobs: dict[str, int],
           flaky_tests: dict[str, int], similar: dict[str, str] | None = None,
           fixes: dict[str, str] | None = None) -> str:
    sha = (pipe.sha or "")[:8]
    similar = similar or {}
    fixes = fixes or {}
    if passed:
        head = (f"### ✅ Pipeline #{pipe.pipeline} passed for `{_cell(pipe.ref, 80)}` ({sha})\n\n"
                f"It replaces failed pipeline #{failed_pipeline}; what was found there:\n")
    else:
        head = f"### ❌ Pipeline #{pipe.pipeline} failed for `{_cell(pipe.ref, 80)}` ({sha})\n"
    lines = [head, "| Job | Stage | Category | Why | Lines to read first | What devops-agent did |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        name = _cell(row["name"], 60) + (" (flaky)" if row["name"] in flaky_jobs else "")
        category = f"{row['category']} ({row.get('confidence', 'high')})"
        lines.append(f"| {name} | {_cell(row.get('stage'), 30)} | {category} | {_why(row)} | "
                     f"{_lines_cell(row)} | {_cell(row['action'], 140)} |")
    details = []
    for r in rows:
        said = [f"{_line(r.get('why'), 300)}."] if r.get("why") else []
        if similar.get(r["name"]):
            sentence = _line(similar[r["name"]], 300)
            said.append(sentence[:1].upper() + sentence[1:] + ".")
        if fixes.get(r["name"]):
            # Our own sentence (its link included), not log text: kept whole, one line.
            said.append(_line(fixes[r["name"]], 700) + ".")
        if r.get("next_steps") and not passed:
            said.append(_cell(r["next_steps"], 400))
        if said:
            details.append(f"- **{_cell(r['name'], 60)}** ({r['category']}): " + " ".join(said))
    if details:
        lines += ["", "**Why, and what next**" if not passed else "**Why**", *details]
    known_flaky = [f"`{_cell(n, 80)}` ({c}×)" for n, c in sorted(flaky_jobs.items())
                   if any(r["name"] == n for r in rows)]
    tests = [f"`{_cell(n, 100)}` ({c}×)" for n, c in sorted(flaky_tests.items())][:10]
    if known_flaky:
        lines += ["", "Flaky jobs (failed, then passed on retry for the same commit): "
                  + ", ".join(known_flaky)]
    if tests:
        lines += ["", "Flaky tests in this project: " + ", ".join(tests)]
    if not passed:
        lines += ["", "<sub>Wrong category? Answer `/devops classify <category> [job]` and "
                      "devops-agent will remember it for failures like this one.</sub>"]
    lines += ["", "<sub>devops-agent edits this comment as later pipelines for this ref "
                  "finish.</sub>"]
    return "\n".join(lines)


def refresh_comment(ctx: Any, pipe_fields: dict[str, Any]) -> str:
    """Edit the failure comment of the pipeline that asked for the fix, so it links the merge
    request; only while that pipeline is still the ref's latest and failed (a later pipeline's
    comment says what is current)."""
    pipe = PipelineRef(**pipe_fields)
    store = Store(ctx.redis)
    state = store.ref_state(pipe.project, pipe.ref)
    if not state or state.get("pipeline") != pipe.pipeline or state.get("status") != "failed":
        return "comment left: a later pipeline reports on this ref"
    explain(ctx, store, pipe, passed=False)
    return "comment refreshed"
