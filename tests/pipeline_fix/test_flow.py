"""The whole flow as plain functions: triage over the recording GitLab counts failures, asks
for the follow-on job at the threshold, `propose` opens or updates the one merge request, the
failure comment links it. Real Redis, the real rules table, the fake GitLab's own handlers."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from tasks.ci.pipeline import FailedJob, PipelineRef
from tasks.ci.pipeline_fix import JOB
from tasks.ci.pipeline_fix.detect import FixHistory
from tasks.ci.pipeline_fix.mr import propose
from tasks.ci.report import refresh_comment
from tasks.ci.rules import load_table
from tasks.ci.triage import triage
from tasks.config.agent import AgentConfig, PipelineFixes
from tasks.config.settings import load_settings
from tasks.worker.context import HandlerContext
from tests.support.fake_gitlab.state import DEVELOPER, REPORTER
from tests.support.logs import fixture_log
from tests.support.recording_gitlab import RecordingGitLab

TABLE = load_table(None)
PROJECT = 15
CI = """# Pipeline for the shop.
stages: [build, test]

.docker: &docker
  image: python:3.12   # pinned: see #12
  tags: [docker]

build:
  <<: *docker
  stage: build
  script:
    - make   # the wheel
  # the integration job needs the wheel

integration:
  extends: .slow
  stage: test
  script: pytest tests/integration

.slow:
  variables:
    SLOW: "1"
"""
TIMEOUT_LOG = b"$ pytest tests/integration\nTerminated\nERROR: Job failed: execution took " \
              b"longer than 1h0m0s seconds\n"


@pytest.fixture
def gl():
    g = RecordingGitLab()
    g.add_project("acme/shop", id=PROJECT, files={".gitlab-ci.yml": CI})
    g.add_issue(PROJECT, 42, "Checkout")
    g.add_mr(PROJECT, 7, description="Closes #42", source_branch="42-fix", closes=[42])
    return g


def context(redis_client, gl, config=None, **env):
    settings = load_settings({"GITLAB_PROJECTS": "acme/*", **env}, require_secret=False)
    return HandlerContext(settings=settings, redis=redis_client, gitlab=gl, rules=TABLE,
                          config=config or AgentConfig(), enqueued=[])


def fail(ctx, gl, job_name="integration", reason="runner_system_failure",
         log="runner-system-failure.log", ref="42-fix"):
    data = fixture_log(log).read_bytes() if isinstance(log, str) else log
    made = gl.add_pipeline(PROJECT, ref=ref, jobs=[
        {"name": job_name, "stage": "test", "failure_reason": reason, "log": data}])
    pipe = PipelineRef(project=PROJECT, pipeline=made["pipeline"]["id"], ref=ref, sha="a" * 40,
                       mr_iid=7, project_path="acme/shop", default_branch="main")
    job = made["jobs"][0]
    rows = triage(ctx, pipe, [FailedJob(job["id"], job_name, "test", reason)])
    return pipe, rows[0]


def asked(ctx):
    return [(kwargs, key) for name, kwargs, key in ctx.enqueued if name == JOB]


def run_jobs(ctx, gl, redis_client, config=None, **kw):
    """What the engine does with each job asked for: propose, then refresh the comment."""
    out = []
    for kwargs, _ in asked(ctx):
        out.append(propose(gl, redis_client, config or ctx.config, **kwargs, **kw))
        refresh_comment(ctx, kwargs["pipe"])
    ctx.enqueued.clear()
    return out


def our_mrs(gl):
    return {iid: mr for (path, iid), mr in gl.mrs.items() if iid != 7}


def comment(gl):
    return gl.notes[("acme/shop", "issue", 42)][-1]["body"]


def test_three_runner_failures_open_one_mr_and_the_fourth_updates_it(redis_client, gl):
    ctx = context(redis_client, gl)
    fail(ctx, gl)
    fail(ctx, gl)
    assert asked(ctx) == []  # two are not a pattern yet
    fail(ctx, gl)
    [(kwargs, key)] = asked(ctx)
    assert kwargs["kind"] == "retry" and key.startswith(f"pipeline-fix:{PROJECT}:integration:retry:")
    assert "a merge request changing `retry:` in the CI configuration was asked for" in comment(gl)
    assert "!8" not in comment(gl)  # nothing is linked before GitLab created it

    assert run_jobs(ctx, gl, redis_client) == ["opened !8"]
    [mr] = our_mrs(gl).values()
    assert mr["title"] == "CI: retry `integration` on runner_system_failure"
    assert set(mr["labels"]) == {"devops-agent", "ci-config"}
    assert mr["target_branch"] == "main" and mr["source_branch"].startswith("devops-agent/ci-retry-")
    body = mr["description"]
    assert "<!-- devops-agent:pipeline-fix:retry:" in body and "```diff" in body
    assert "`integration` failed 3 times with `runner_system_failure` in the last 1 day" in body
    assert body.count("/-/jobs/") == 3 and "GitLab's CI lint accepted" in body
    new = gl.get_file(PROJECT, ".gitlab-ci.yml", mr["source_branch"])["content"]
    assert "# Pipeline for the shop." in new and "&docker" in new and "# pinned: see #12" in new
    assert "    when: [runner_system_failure]\n" in new
    assert gl.ci_lint(PROJECT, new)["valid"] is True
    assert "Merge request [!8](https://gitlab.example/acme/shop/-/merge_requests/8) proposes " \
           "`retry:`" in comment(gl)

    fail(ctx, gl)  # the fourth
    commits = [e for e in gl.effects if "commit_created" in e]
    assert run_jobs(ctx, gl, redis_client) == ["updated !8"]
    assert len(our_mrs(gl)) == 1
    assert [e for e in gl.effects if "commit_created" in e] == commits  # the same change
    assert our_mrs(gl)[8]["description"].count("/-/jobs/") == 4
    assert "updated with the latest failures" in comment(gl)


def test_a_resent_failure_counts_once(redis_client, gl):
    ctx = context(redis_client, gl)
    pipe, row = fail(ctx, gl)
    for _ in range(3):
        redis_client.delete(f"da:jobs:{PROJECT}:{pipe.pipeline}")
        triage(ctx, pipe, [FailedJob(row["job_id"], "integration", "test",
                                     "runner_system_failure")])
    assert asked(ctx) == []
    assert len(FixHistory(redis_client).failures(PROJECT, "integration",
                                                 "runner_system_failure", 86400)) == 1


def test_a_closed_mr_is_respected_for_30_days(redis_client, gl):
    ctx = context(redis_client, gl)
    for _ in range(3):
        fail(ctx, gl)
    run_jobs(ctx, gl, redis_client)
    gl.update_mr(PROJECT, 8, state_event="close")  # a person said no
    fail(ctx, gl)
    [outcome] = run_jobs(ctx, gl, redis_client)
    assert outcome.startswith("skipped: [!8]") and "was closed on" in outcome
    assert gl.get_mr(PROJECT, 8)["state"] == "closed" and len(our_mrs(gl)) == 1
    assert "No merge request changing `retry:`: [!8]" in comment(gl)
    # 31 days later the job still fails: a new proposal, on a new branch, that says so.
    later = (datetime.now(UTC) + timedelta(days=31)).timestamp()
    history = FixHistory(redis_client, clock=lambda: later)
    for i in range(3):
        history.record(PROJECT, "integration", "runner_system_failure", 90000 + i,
                       {"pipeline": 1, "ref": "main"}, 86400)
    assert propose(gl, redis_client, AgentConfig(), project=PROJECT, job_name="integration",
                   kind="retry", clock=lambda: later) == "opened !9"
    assert our_mrs(gl)[9]["source_branch"] != our_mrs(gl)[8]["source_branch"]
    assert "It follows [!8]" in our_mrs(gl)[9]["description"]


def test_code_failures_never_produce_a_merge_request(redis_client, gl):
    ctx = context(redis_client, gl)
    for _ in range(4):
        _, row = fail(ctx, gl, reason="script_failure", log="pytest-failure.log")
    assert row["category"] == "test_failure"
    assert asked(ctx) == [] and our_mrs(gl) == {}
    assert "merge request" not in comment(gl).lower().replace("merge request hook", "")


def test_a_network_error_in_the_script_is_explained_not_retried(redis_client, gl):
    ctx = context(redis_client, gl)
    for _ in range(3):
        _, row = fail(ctx, gl, reason="script_failure", log="network-dns.log")
    assert row["category"] == "network_error"
    assert asked(ctx) == []
    assert "cannot tell that from a failing test" in comment(gl)


def test_an_outage_is_not_counted_against_one_job(redis_client, gl):
    ctx = context(redis_client, gl, OUTAGE_JOB_THRESHOLD="1")
    log = fixture_log("runner-system-failure.log").read_bytes()
    for _ in range(3):
        made = gl.add_pipeline(PROJECT, ref="42-fix", jobs=[
            {"name": name, "failure_reason": "runner_system_failure", "log": log}
            for name in ("integration", "build")])
        pipe = PipelineRef(PROJECT, made["pipeline"]["id"], "42-fix", "a" * 40, mr_iid=7)
        triage(ctx, pipe, [FailedJob(j["id"], j["name"], "test", "runner_system_failure")
                           for j in made["jobs"]])
    assert asked(ctx) == []


def test_disabled_or_dry_run_opens_nothing(redis_client, gl):
    off = AgentConfig(pipeline_fixes=PipelineFixes(enabled=False))
    ctx = context(redis_client, gl, config=off)
    for _ in range(3):
        fail(ctx, gl)
    assert asked(ctx) == []
    redis_client.flushall()
    dry = context(redis_client, RecordingGitLab(dry_run=True, state=gl.state), DRY_RUN="1")
    for _ in range(3):
        fail(dry, dry.gitlab)
    assert asked(dry) == [] and our_mrs(gl) == {}


def test_a_timeout_near_the_limit_raises_it_by_one_step(redis_client, gl):
    gl.state.set_project(PROJECT, build_timeout=3600)
    passing = gl.add_pipeline(PROJECT, ref="main", status="success")["pipeline"]["id"]
    gl.add_job(PROJECT, passing, "integration", status="success", duration=3300)
    ctx = context(redis_client, gl)
    for _ in range(3):
        fail(ctx, gl, reason="job_execution_timeout", log=TIMEOUT_LOG)
    [(kwargs, _)] = asked(ctx)
    assert kwargs["kind"] == "timeout"
    assert run_jobs(ctx, gl, redis_client) == ["opened !8"]
    mr = our_mrs(gl)[8]
    assert mr["title"] == "CI: raise the timeout of `integration` to 1h 30m"
    assert "Its limit today is 1 h (the project's timeout setting)" in mr["description"]
    assert "took up to 55 min, 92% of the limit" in mr["description"]
    new = gl.get_file(PROJECT, ".gitlab-ci.yml", mr["source_branch"])["content"]
    assert "  script: pytest tests/integration\n  # Raised from 1 h" in new
    assert "  timeout: 1h 30m\n" in new


def test_a_timeout_of_a_job_that_usually_is_quick_is_a_hang(redis_client, gl):
    passing = gl.add_pipeline(PROJECT, ref="main", status="success")["pipeline"]["id"]
    gl.add_job(PROJECT, passing, "integration", status="success", duration=240)
    ctx = context(redis_client, gl)
    for _ in range(3):
        fail(ctx, gl, reason="job_execution_timeout", log=TIMEOUT_LOG)
    [outcome] = run_jobs(ctx, gl, redis_client)
    assert "it is hanging, and more time would not help" in outcome and our_mrs(gl) == {}
    assert "No merge request changing `timeout:`: passing runs of `integration` take at most " \
           "4 min" in comment(gl)


def test_the_runner_cap_is_said_instead_of_raising_the_timeout(redis_client, gl):
    log = fixture_log("job-timeout-runner.log").read_bytes()  # the runner stopped it at 30 s
    ctx = context(redis_client, gl)
    for _ in range(3):
        fail(ctx, gl, reason="job_execution_timeout", log=log)
    [outcome] = run_jobs(ctx, gl, redis_client)
    assert "the runner's maximum timeout caps it" in outcome and our_mrs(gl) == {}


def test_an_invalid_configuration_today_is_not_touched(redis_client, gl):
    gl.state.push_commit(PROJECT, "main", {".gitlab-ci.yml": CI.replace("stage: test",
                                                                        "stage: tests")})
    ctx = context(redis_client, gl)
    for _ in range(3):
        fail(ctx, gl)
    [outcome] = run_jobs(ctx, gl, redis_client)
    assert "does not pass GitLab's CI lint today" in outcome and "chosen stage does not exist" \
        in outcome
    assert our_mrs(gl) == {}


def test_a_bot_without_push_access_is_told_in_the_comment(redis_client, gl):
    gl.add_member(PROJECT, 1, REPORTER)
    ctx = context(redis_client, gl)
    for _ in range(3):
        fail(ctx, gl)
    [outcome] = run_jobs(ctx, gl, redis_client)
    assert outcome.startswith("skipped: GitLab refused (403)")
    assert "the bot needs Developer access" in comment(gl)
    gl.add_member(PROJECT, 1, DEVELOPER)
    fail(ctx, gl)
    assert run_jobs(ctx, gl, redis_client) == ["opened !8"]


def test_the_job_refreshes_only_the_latest_failed_pipeline_comment(redis_client, gl):
    ctx = context(redis_client, gl)
    for _ in range(3):
        pipe, _ = fail(ctx, gl)
    [(kwargs, _)] = asked(ctx)
    # A later pipeline of the ref passed before the job ran: its comment is what is current.
    from tasks.ci.triage import passed

    passed(ctx, PipelineRef(PROJECT, pipe.pipeline + 100, "42-fix", "b" * 40, mr_iid=7))
    before = comment(gl)
    propose(gl, redis_client, ctx.config, **kwargs)
    assert refresh_comment(ctx, asdict(pipe)).startswith("comment left")
    assert comment(gl) == before
