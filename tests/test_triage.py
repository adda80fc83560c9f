"""Triage as plain functions over the recording GitLab, the real rules table and a real Redis."""

from __future__ import annotations

import pytest

from tasks.ci.linking import linked_targets, mentioned_issues, mr_iid_from_ref
from tasks.ci.pipeline import FailedJob, PipelineRef
from tasks.ci.report import render
from tasks.ci.rules import load_table
from tasks.ci.triage import passed, project_allowed, triage
from tasks.config.settings import load_settings
from tasks.platform.store import Store
from tasks.worker.context import HandlerContext
from tests.support.logs import fixture_log
from tests.support.recording_gitlab import RecordingGitLab

TABLE = load_table(None)


def context(redis_client, gitlab, **env) -> HandlerContext:
    settings = load_settings({"GITLAB_PROJECTS": "acme/*", **env}, require_secret=False)
    return HandlerContext(settings=settings, redis=redis_client, gitlab=gitlab, rules=TABLE,
                          enqueued=[])


@pytest.fixture
def gl():
    g = RecordingGitLab()
    g.add_project("acme/shop", id=15)
    g.add_issue(15, 42, "Checkout")
    g.add_issue(15, 43, "Closed one", state="closed")
    g.add_mr(15, 7, description="Closes #42 and #43. Related to #99", source_branch="42-fix",
             closes=[42])
    return g


@pytest.mark.parametrize("text,expected", [
    ("Closes #12", [12]), ("fixes #1, #2 and #3", [1, 2, 3]), ("Related to #5", [5]),
    ("Resolves: #8", [8]), ("see #9", []), ("closes#10", []), ("", []), (None, []),
    ("Implements #4\nFixed #6", [4, 6]),
])
def test_mentions(text, expected):
    assert mentioned_issues(text) == expected


def test_mr_refs():
    assert mr_iid_from_ref("refs/merge-requests/17/head") == 17
    assert mr_iid_from_ref("main") is None and mr_iid_from_ref(None) is None


def test_linked_targets_skip_closed_and_missing_issues(gl):
    assert linked_targets(gl, 15, ref="42-fix", mr_iid=7) == [("issue", 42)]
    # no link at all: the MR itself; no MR: nothing
    gl.add_mr(15, 8, source_branch="feature")
    assert linked_targets(gl, 15, ref="feature", mr_iid=8) == [("mr", 8)]
    assert linked_targets(gl, 15, ref="main", mr_iid=None) == []
    assert linked_targets(gl, 15, ref="main", mr_iid=None, commit_message="Fixes #42") == [("issue", 42)]


def test_project_allow_list():
    s = load_settings({"GITLAB_PROJECTS": "12,acme/*,solo/repo"}, require_secret=False)
    assert project_allowed(s, 12, None) and project_allowed(s, 1, "acme/shop")
    assert project_allowed(s, 1, "acme/sub/deep") and project_allowed(s, 2, "solo/repo")
    assert not project_allowed(s, 3, "acmex/shop") and not project_allowed(s, 4, "solo/repo2")
    assert not project_allowed(load_settings({}, require_secret=False), 12, "acme/shop")


def seed_failure(gl, pid=500, job_id=900, log="runner-system-failure.log",
                 reason="runner_system_failure"):
    gl.add_pipeline(15, ref="42-fix", id=pid, jobs=[
        {"id": job_id, "name": "integration", "failure_reason": reason,
         "log": fixture_log(log).read_bytes()}])
    return PipelineRef(project=15, pipeline=pid, ref="42-fix", sha="a" * 40, mr_iid=7,
                       project_path="acme/shop"), \
        FailedJob(job_id, "integration", "test", reason)


def test_retry_flaky_then_pass_marks_the_job_flaky(redis_client, gl):
    ctx = context(redis_client, gl)
    pipe, job = seed_failure(gl)
    [row] = triage(ctx, pipe, [job])
    assert row["action"] == "retried, attempt 1 of 2"
    assert passed(ctx, PipelineRef(15, 501, "42-fix", "a" * 40, mr_iid=7)) == "updated"
    assert Store(redis_client).flaky(15, "jobs") == {"integration": 1}
    passed(ctx, PipelineRef(15, 501, "42-fix", "a" * 40, mr_iid=7))  # resent: counted once
    assert Store(redis_client).flaky(15, "jobs") == {"integration": 1}
    note = gl.notes[("acme/shop", "issue", 42)][-1]["body"]
    assert "passed" in note and "integration (flaky)" in note


def test_dry_run_writes_nothing(redis_client):
    gl = RecordingGitLab(dry_run=True)
    gl.add_project("acme/shop", id=15)
    gl.add_issue(15, 42)
    gl.add_mr(15, 7, source_branch="42-fix", closes=[42])
    ctx = context(redis_client, gl, DRY_RUN="1")
    pipe, job = seed_failure(gl)
    [row] = triage(ctx, pipe, [job])
    assert row["action"].startswith("would retry")
    assert not any("job_retried" in e for e in gl.effects)
    assert ctx.enqueued == []
    # nothing was spent from the budget
    assert Store(redis_client).attempts_used(15, 500, "integration") == 0


def test_retry_refused_by_gitlab_gives_the_attempt_back_and_says_why(redis_client, gl):
    from tasks.gitlab.client import Forbidden

    ctx = context(redis_client, gl)
    pipe, job = seed_failure(gl)
    gl.fail_next("retry_job", Forbidden("403 Forbidden - Job is not retryable", 403))
    [row] = triage(ctx, pipe, [job])
    assert row["action"].startswith("could not retry `integration`: GitLab refused")
    assert Store(redis_client).attempts_used(15, 500, "integration") == 0
    redis_client.delete("da:jobs:15:500")
    [row] = triage(ctx, pipe, [job])  # a later hook for the same failure
    assert row["action"] == "retried, attempt 1 of 2"


def test_a_reporter_bot_is_told_what_access_it_needs(redis_client, gl):
    gl.add_member(15, 1, 20)  # the bot (user 1) is only a Reporter here
    ctx = context(redis_client, gl)
    pipe, job = seed_failure(gl)
    [row] = triage(ctx, pipe, [job])
    assert row["action"] == ("could not retry `integration`: the bot has Reporter access to "
                             "acme/shop and needs Developer to retry a job; a Maintainer can "
                             "raise it in Project information → Members")
    note = gl.notes[("acme/shop", "issue", 42)][-1]["body"]
    assert "needs Developer to retry a job" in note


def test_a_retry_that_timed_out_but_was_applied_is_not_sent_again(redis_client, gl):
    from tasks.gitlab.client import GitLabUnavailable

    ctx = context(redis_client, gl)
    pipe, job = seed_failure(gl)
    real = gl.retry_job

    def applied_then_timed_out(project, job_id):
        real(project, job_id)  # GitLab made the retry...
        raise GitLabUnavailable("retry_job: ReadTimeout")  # ...but the answer never came

    gl.retry_job = applied_then_timed_out
    [row] = triage(ctx, pipe, [job])
    assert row["action"] == "retried, attempt 1 of 2"
    assert sum(1 for e in gl.effects if ":job_retried:" in e) == 1


def test_a_claim_whose_retry_never_happened_is_completed(redis_client, gl):
    ctx = context(redis_client, gl)
    pipe, job = seed_failure(gl)
    # A worker took the claim and was killed before its POST.
    assert Store(redis_client).claim_retry(15, 500, "integration", job.id, 2) == (1, True)
    [row] = triage(ctx, pipe, [job])
    assert row["action"] == "retried, attempt 1 of 2"
    assert sum(1 for e in gl.effects if ":job_retried:" in e) == 1


def test_breaker_opens_after_many_projects_and_files_one_incident(redis_client, gl):
    ctx = context(redis_client, gl, BREAKER_PROJECTS="2", INCIDENT_PROJECT="acme/shop")
    store = Store(redis_client)
    pipe, job = seed_failure(gl)
    rule = TABLE.classify([fixture_log("runner-system-failure.log").read_bytes()],
                          failure_reason="runner_system_failure").rule_id
    for other in (101, 102):
        store.breaker_hit(rule, other, 600)
    [row] = triage(ctx, pipe, [job])
    assert "failing in 3 projects" in row["action"] and "incident #" in row["action"]
    assert not any("job_retried" in e for e in gl.effects)
    incidents = [i for i in gl.issues.values() if "devops-agent:incident" in i["labels"]]
    assert len(incidents) == 1


def test_test_failure_hands_off_once(redis_client, gl):
    ctx = context(redis_client, gl)
    pipe, job = seed_failure(gl, log="pytest-failure.log", reason="script_failure")
    [row] = triage(ctx, pipe, [job])
    assert row["category"] == "test_failure" and row["action_kind"] == "fix"
    redis_client.delete("da:jobs:15:500")
    triage(ctx, pipe, [job])
    # Asked for twice, under one key: the engine creates the job once (tests/test_dispatch.py).
    assert [(name, key) for name, _, key in ctx.enqueued] == \
        [("devops_agent.fix_build", "fix:15:500:integration")] * 2


def test_render_neutralises_hostile_evidence():
    row = {"name": "a|b", "stage": "t`x", "category": "unknown", "rule": "r",
           "evidence": [{"line": 3, "text": "| evil ``` <!-- " + "x" * 500, "section": None}],
           "action": "not retried\n| injected |", "next_steps": ""}
    body = render(PipelineRef(1, 2, "main`", "f" * 40), [row], passed=False, failed_pipeline=None,
                  flaky_jobs={}, flaky_tests={})
    table_rows = [l for l in body.splitlines() if l.startswith("| a")]
    assert len(table_rows) == 1 and table_rows[0].count(" | ") == 5
    assert "```" not in body and len(table_rows[0]) < 600


def test_cause_labels_follow_the_latest_failure_without_reading_the_issue(redis_client, gl):
    ctx = context(redis_client, gl)
    pipe, job = seed_failure(gl)
    triage(ctx, pipe, [job])
    labels = gl.issues[("acme/shop", 42)]["labels"]
    assert "ci-failure:runner_system_failure" in labels and "ci::failed" in labels
    pipe2, job2 = seed_failure(gl, pid=600, job_id=901, log="pytest-failure.log",
                               reason="script_failure")
    triage(ctx, pipe2, [job2])
    labels = gl.issues[("acme/shop", 42)]["labels"]
    assert "ci-failure:test_failure" in labels
    assert "ci-failure:runner_system_failure" not in labels and "ci-cause:infra" not in labels
    passed(ctx, PipelineRef(15, 601, "42-fix", "b" * 40, mr_iid=7))
    labels = gl.issues[("acme/shop", 42)]["labels"]
    assert "ci::passed" in labels and not [l for l in labels if l.startswith("ci-failure:")]


def test_a_commit_naming_thousands_of_issues_is_capped(redis_client):
    from tasks.ci.linking import MAX_LINKED_ISSUES

    gl = RecordingGitLab()
    gl.add_project("acme/shop", id=15)
    for iid in range(1000, 1020):
        gl.add_issue(15, iid, f"issue {iid}")
    message = "Closes " + ", ".join(f"#{i}" for i in range(1000, 4000))
    ctx = context(redis_client, gl)
    pipe, job = seed_failure(gl)
    pipe = PipelineRef(15, pipe.pipeline, "feature", "a" * 40, commit_message=message)
    triage(ctx, pipe, [job])
    reads = [c for c in gl.calls if c[0] == "get_issue"]
    assert len(reads) <= MAX_LINKED_ISSUES
    commented = [k for k, notes in gl.notes.items() if k[0] == "acme/shop" and notes]
    assert len(commented) == MAX_LINKED_ISSUES
    body = gl.notes[commented[0]][-1]["body"]
    assert f"more linked issue(s) were not commented on: at most {MAX_LINKED_ISSUES}" in body
