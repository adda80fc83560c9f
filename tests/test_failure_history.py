"""Similar failures and broken trunk, over a real Redis: what the comment can say."""

from __future__ import annotations

from tasks.ci.history import MAX_OCCURRENCES, FailureHistory
from tasks.ci.pipeline import FailedJob, PipelineRef
from tasks.ci.triage import triage
from tests.support.logs import fixture_log
from tests.support.recording_gitlab import RecordingGitLab
from tests.test_triage import context


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_trunk_failure_is_named_until_trunk_passes(redis_client):
    h = FailureHistory(redis_client, Clock())
    h.record("sig1", project=15, pipeline=800, job=1, sha="a", job_name="unit", ref="main",
             default_branch="main")
    h.record("sig1", project=15, pipeline=801, job=2, sha="b", job_name="unit", ref="main",
             default_branch="main")
    on_mr = h.similar("sig1", project=15, ref="feature", default_branch="main")
    assert on_mr.trunk_since["pipeline"] == 800  # the first of the streak
    assert "also failing on `main` since pipeline #800" in on_mr.sentence("main")
    assert h.similar("sig1", project=15, ref="main", default_branch="main").trunk_since is None
    assert h.similar("sig1", project=16, ref="feature", default_branch="main").trunk_since is None
    h.trunk_passed(15)
    assert h.similar("sig1", project=15, ref="feature", default_branch="main").trunk_since is None


def test_counts_across_projects_within_the_window_and_retries_that_passed(redis_client):
    clock = Clock()
    h = FailureHistory(redis_client, clock)
    for project, job in ((1, 10), (2, 20), (2, 21), (2, 21)):  # the last one a redelivery
        h.record("sig2", project=project, pipeline=job, job=job, sha=f"s{job}", job_name="it",
                 ref="f", default_branch="main")
    assert h.passed_on_retry(project=2, sha="s20", job_name="it") == "sig2"
    assert h.passed_on_retry(project=2, sha="s20", job_name="it") == "sig2"  # once per commit
    assert h.passed_on_retry(project=2, sha="nope", job_name="it") is None
    seen = h.similar("sig2", project=1, ref="f", default_branch="main")
    assert (seen.seen, seen.projects, seen.passed_on_retry) == (3, 2, 1)
    assert seen.sentence("main") == ("seen 3 times in 2 projects in the last 7 days; "
                                     "passed on retry 1 time (flaky)")
    clock.now += 8 * 86400
    assert h.similar("sig2", project=1, ref="f", default_branch="main").seen == 0


def test_history_is_capped(redis_client):
    h = FailureHistory(redis_client, Clock())
    for job in range(MAX_OCCURRENCES + 50):
        h.record("sig3", project=1, pipeline=job, job=job, sha="x", job_name="it", ref="f",
                 default_branch="main")
    assert redis_client.zcard("da:sig:sig3:seen") == MAX_OCCURRENCES
    assert redis_client.ttl("da:sig:sig3:seen") > 0


def test_an_mr_comment_says_the_failure_is_already_on_main(redis_client):
    gl = RecordingGitLab()
    gl.add_project("acme/shop", id=15)
    gl.add_issue(15, 42, "Checkout")
    gl.add_mr(15, 7, source_branch="42-fix", closes=[42])
    ctx = context(redis_client, gl)
    log = fixture_log("pytest-failure.log").read_bytes()
    for pid, job, ref in ((700, 1, "main"), (701, 2, "42-fix")):
        gl.add_pipeline(15, ref=ref, id=pid, jobs=[{"id": job, "name": "unit", "log": log,
                                                    "failure_reason": "script_failure"}])
        triage(ctx, PipelineRef(15, pid, ref, "a" * 40, mr_iid=7 if ref != "main" else None,
                                default_branch="main"),
               [FailedJob(job, "unit", "test", "script_failure")])
    note = gl.notes[("acme/shop", "issue", 42)][-1]["body"]
    assert "Also failing on `main` since pipeline #700: not caused by this change" in note
