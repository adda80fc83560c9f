"""The GitLab adapter against the fake GitLab over real HTTP: plain data out, typed errors,
bounded retries (counted by the fake), tail-capped logs, dry-run."""

from __future__ import annotations

import inspect
import logging
import socket
import traceback

import pytest

from tasks.adapters.gitlab import (Forbidden, GitLabAdapter, GitLabError, GitLabUnavailable,
                                   JobLog, NotFound, RateLimited)
from tests.support.fake_gitlab import DEVELOPER, MAINTAINER, FakeGitLabProcess
from tests.support.recording_gitlab import RecordingGitLab


PROJECT = "group/proj"
JOB_PATH = r"/jobs/\d+$"


@pytest.fixture
def fake(fake_gitlab):
    fake_gitlab.add_project(PROJECT, id=1, members={7: DEVELOPER, 8: MAINTAINER})
    return fake_gitlab


@pytest.fixture
def gl(fake):
    adapter = GitLabAdapter(fake.url, fake.token, timeout=5, max_retries=3, per_page=5)
    yield adapter
    adapter.close()


@pytest.fixture
def failed(fake):
    made = fake.add_pipeline(1, status="failed", jobs=[
        {"name": "build", "stage": "build", "status": "success"},
        {"name": "unit", "stage": "test", "status": "failed",
         "failure_reason": "script_failure"},
        {"name": "lint", "stage": "test", "status": "failed", "allow_failure": True}])
    return made


# -- reads ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ref", [1, PROJECT])
def test_pipeline_and_jobs_by_id_or_path(gl, failed, ref):
    pid = failed["pipeline"]["id"]
    pipe = gl.get_pipeline(ref, pid)
    assert type(pipe) is dict and pipe["status"] == "failed"
    jobs = gl.pipeline_jobs(ref, pid, scope="failed")
    assert [j["name"] for j in jobs] == ["unit", "lint"]
    assert all(type(j) is dict for j in jobs)
    assert len(gl.pipeline_jobs(ref, pid)) == 3


def test_jobs_paginate_past_per_page(gl, fake):
    made = fake.add_pipeline(1, jobs=[{"name": f"j{i}"} for i in range(12)])
    assert len(gl.pipeline_jobs(1, made["pipeline"]["id"])) == 12  # per_page=5: 3 pages
    assert len(fake.calls(path_re=r"/pipelines/\d+/jobs")) == 3


def test_latest_pipeline(gl, fake):
    fake.add_pipeline(1, ref="main", status="success")
    newest = fake.add_pipeline(1, ref="main", status="failed")["pipeline"]
    assert gl.latest_pipeline(1, "main")["id"] == newest["id"]
    assert gl.latest_pipeline(1, "no-such-ref") is None


def test_get_job_fields(gl, failed):
    job = gl.get_job(1, failed["jobs"][1]["id"])
    assert {"id", "name", "stage", "status", "failure_reason", "allow_failure", "pipeline",
            "ref", "web_url", "user", "started_at", "finished_at"} <= set(job)
    assert job["pipeline"]["id"] == failed["pipeline"]["id"]


def test_retry_job_returns_the_new_job(gl, fake, failed):
    old = failed["jobs"][1]
    new = gl.retry_job(PROJECT, old["id"])
    assert new["id"] != old["id"] and new["status"] == "pending"
    assert new["pipeline"]["id"] == failed["pipeline"]["id"]
    assert fake.side_effects() == [f"{PROJECT}:job_retried:{old['id']}->{new['id']}"]


def test_retry_of_running_job_is_forbidden(gl, fake):
    job = fake.add_pipeline(1, status="running", jobs=[{"name": "x", "status": "running"}])
    with pytest.raises(Forbidden) as e:
        gl.retry_job(1, job["jobs"][0]["id"])
    assert e.value.status == 403


def test_test_report(gl, fake, failed):
    fake.set_test_report(1, failed["pipeline"]["id"], {"total_count": 3, "failed_count": 1,
                                                       "test_suites": []})
    assert gl.test_report(1, failed["pipeline"]["id"])["failed_count"] == 1


def test_access_level(gl):
    assert gl.access_level(PROJECT, 8) == MAINTAINER
    assert gl.access_level(PROJECT, 7) == DEVELOPER
    assert gl.access_level(PROJECT, 999) == 0


def test_freeze_periods_and_current_user(gl, fake):
    fake.add_freeze_period(1, "0 23 * * 5", "0 7 * * 1", "UTC")
    assert gl.freeze_periods(PROJECT)[0]["freeze_start"] == "0 23 * * 5"
    assert gl.current_user()["username"] == "devops-bot"


# -- issues, labels, notes, MRs --------------------------------------------------------------
def test_issue_lifecycle(gl, fake):
    issue = gl.create_issue(PROJECT, "Flaky: test_x", "details", ["flaky", "ci"])
    iid = issue["iid"]
    assert gl.find_issues(PROJECT, labels=["flaky"], search="test_x")[0]["iid"] == iid
    assert gl.find_issues(PROJECT, labels=["other"]) == []
    assert gl.add_labels(PROJECT, "issue", iid, ["seen"])["labels"] == ["flaky", "ci", "seen"]
    assert gl.remove_labels(PROJECT, "issue", iid, ["ci"])["labels"] == ["flaky", "seen"]
    gl.update_issue(PROJECT, iid, description="new", state_event="close")
    got = gl.get_issue(PROJECT, iid)
    assert (got["description"], got["state"]) == ("new", "closed")
    assert gl.find_issues(PROJECT, labels=["flaky"]) == []
    assert len(gl.find_issues(PROJECT, labels=["flaky"], state="all")) == 1
    assert f"{PROJECT}#{iid}:label_added:seen" in fake.side_effects()


def test_notes_edit_and_emoji(gl, fake):
    iid = gl.create_issue(1, "t")["iid"]
    note = gl.create_note(1, "issue", iid, "<!-- devops-agent:ci -->\nfirst")
    assert note["author"]["username"] == "devops-bot"
    updated = gl.update_note(1, "issue", iid, note["id"], "<!-- devops-agent:ci -->\nsecond")
    assert updated["body"].endswith("second")
    gl.award_emoji(1, "issue", iid, note["id"], "eyes")
    for i in range(6):
        fake.add_note(1, "issue", iid, f"later {i}")
    notes = gl.list_notes(1, "issue", iid)
    assert notes[0]["id"] == note["id"] and len(notes) == 7  # oldest first, across pages
    assert f"{PROJECT}#{iid}:emoji_awarded:{note['id']}:eyes" in fake.side_effects()


def test_mr_flow(gl, fake):
    fake.add_issue(1, "bug")
    gl.create_branch(1, "bot/fix", "main")
    commit = gl.create_commit(1, "bot/fix", "Fix flaky test",
                              [{"action": "create", "file_path": "fix.txt", "content": "x"}])
    gl.create_commit(1, "bot/other", "From main",
                     [{"action": "create", "file_path": "o.txt", "content": "y"}],
                     start_branch="main")
    mr = gl.create_mr(1, "bot/fix", "main", "Fix", "Closes #1", labels=["bot"])
    assert gl.get_mr(1, mr["iid"])["sha"] == commit["id"]
    assert [i["iid"] for i in gl.mr_closes_issues(1, mr["iid"])] == [1]
    assert gl.mr_approvals(1, mr["iid"])["approved"] is True
    note = gl.create_note(1, "mr", mr["iid"], "hello")
    assert gl.list_notes(1, "mr", mr["iid"])[-1]["id"] == note["id"]
    assert gl.add_labels(1, "mr", mr["iid"], ["x"])["labels"] == ["bot", "x"]


def test_deployments(gl, fake):
    d = gl.create_deployment(1, "production", "a" * 40, "main")
    assert d["status"] == "running"
    assert gl.update_deployment(1, d["id"], "success")["status"] == "success"


def test_bad_kind_is_a_programming_error(gl):
    with pytest.raises(ValueError):
        gl.create_note(1, "epic", 1, "x")


# -- errors ----------------------------------------------------------------------------------
def test_not_found(gl):
    with pytest.raises(NotFound) as e:
        gl.get_job(1, 424242)
    assert e.value.status == 404 and "Job Not Found" in str(e.value)
    with pytest.raises(NotFound):
        gl.get_pipeline("group/nope", 1)
    assert issubclass(NotFound, GitLabError)


def test_429_with_retry_after_then_success(gl, fake, failed):
    fake.fault(JOB_PATH, method="GET", status=429, retry_after=0, count=2)
    assert gl.get_job(1, failed["jobs"][0]["id"])["name"] == "build"
    assert [c["status"] for c in fake.calls(path_re=JOB_PATH)] == [429, 429, 200]


def test_persistent_429_is_bounded(gl, fake, failed):
    fake.fault(JOB_PATH, status=429, retry_after=0, count=None)
    with pytest.raises(RateLimited) as e:
        gl.get_job(1, failed["jobs"][0]["id"])
    assert e.value.status == 429 and e.value.retry_after == 0
    assert len(fake.calls(path_re=JOB_PATH)) == 4  # 1 + max_retries


def test_long_retry_after_is_not_slept_through(gl, fake, failed):
    fake.fault(JOB_PATH, status=429, retry_after=3600, count=None)
    with pytest.raises(RateLimited) as e:
        gl.get_job(1, failed["jobs"][0]["id"])
    assert e.value.retry_after == 3600
    assert len(fake.calls(path_re=JOB_PATH)) == 1


def test_500_then_success(gl, fake, failed):
    fake.fault(JOB_PATH, method="GET", status=500, count=1)
    assert gl.get_job(1, failed["jobs"][1]["id"])["status"] == "failed"
    assert [c["status"] for c in fake.calls(path_re=JOB_PATH)] == [500, 200]


def test_idempotent_put_retries_5xx(gl, fake):
    iid = fake.add_issue(1, "t")["iid"]
    fake.fault(r"/issues/\d+$", method="PUT", status=503, count=2)
    assert gl.add_labels(1, "issue", iid, ["x"])["labels"] == ["x"]
    assert [c["status"] for c in fake.calls(method="PUT")] == [503, 503, 200]


def test_post_is_not_resent_after_5xx(gl, fake, failed):
    # GitLab may have applied it: a second retry request would start a second job.
    fake.fault(r"/retry$", method="POST", status=502, count=1)
    with pytest.raises(GitLabUnavailable):
        gl.retry_job(1, failed["jobs"][1]["id"])
    assert len(fake.calls(method="POST")) == 1


def test_post_is_resent_after_429(gl, fake, failed):
    fake.fault(r"/retry$", method="POST", status=429, retry_after=0, count=1)
    assert gl.retry_job(1, failed["jobs"][1]["id"])["status"] == "pending"
    assert [c["status"] for c in fake.calls(method="POST")] == [429, 201]


def test_429_without_any_wait_header_is_bounded(gl, fake, failed):
    fake.fault(JOB_PATH, status=429, count=None)
    with pytest.raises(RateLimited):  # no header: python-gitlab's short backoff, bounded
        gl.get_job(1, failed["jobs"][0]["id"])
    assert len(fake.calls(path_re=JOB_PATH)) == 4


def test_persistent_502_is_unavailable_after_bounded_attempts(gl, fake, failed):
    fake.fault(JOB_PATH, status=502, count=None)
    with pytest.raises(GitLabUnavailable) as e:
        gl.get_job(1, failed["jobs"][0]["id"])
    assert e.value.status == 502
    assert len(fake.calls(path_re=JOB_PATH)) == 4


def test_timeouts_are_bounded(fake, failed):
    fake.fault(JOB_PATH, delay=1.0, count=None)
    quick = GitLabAdapter(fake.url, fake.token, timeout=0.2, max_retries=1)
    with pytest.raises(GitLabUnavailable):
        quick.get_job(1, failed["jobs"][0]["id"])
    assert len(fake.calls(path_re=JOB_PATH)) == 2
    quick.close()


def test_network_error_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    gl = GitLabAdapter(f"http://127.0.0.1:{port}", "tok-123", timeout=1, max_retries=1)
    with pytest.raises(GitLabUnavailable) as e:
        gl.current_user()
    assert "tok-123" not in str(e.value)


def test_token_never_in_errors(fake, failed):
    secret = fake.token
    fake.fault(JOB_PATH, status=500, count=None, body={"message": f"boom {secret}"})
    gl = GitLabAdapter(fake.url, secret, timeout=5, max_retries=0)
    with pytest.raises(GitLabUnavailable) as e:
        gl.get_job(1, failed["jobs"][0]["id"])
    text = "".join(traceback.format_exception(e.value)) + repr(e.value) + repr(gl)
    assert secret not in text and "[REDACTED]" in str(e.value)
    fake.clear_faults()
    wrong = GitLabAdapter(fake.url, "wrong-secret-token")
    with pytest.raises(Forbidden) as e2:
        wrong.get_job(1, failed["jobs"][0]["id"])
    assert e2.value.status == 401 and "wrong-secret-token" not in str(e2.value)


# -- job logs ----------------------------------------------------------------------------------
def test_small_log_is_whole(gl, fake, failed):
    job_id = failed["jobs"][1]["id"]
    fake.set_trace(job_id, text="$ make\nerror: boom\n")
    log = gl.job_log(1, job_id)
    assert log == JobLog(b"$ make\nerror: boom\n", 0) and not log.truncated
    data, dropped = log  # unpacks as (bytes, truncated_bytes)
    assert dropped == 0


def test_log_keeps_the_tail_on_a_line_boundary(fake, failed):
    job_id = failed["jobs"][1]["id"]
    lines = [f"line {i:04d}\n" for i in range(1000)]
    full = "".join(lines).encode()
    fake.set_trace(job_id, text="".join(lines), chunk_size=333)
    gl = GitLabAdapter(fake.url, fake.token, max_log_bytes=1000, log_chunk_bytes=128)
    log = gl.job_log(1, job_id)
    assert log.truncated and len(log.data) <= 1000
    assert full.endswith(log.data) and log.data.startswith(b"line ")
    assert log.truncated_bytes + len(log.data) == len(full)


MEASURE_LOG_MEMORY = """
import sys, tracemalloc
from tasks.adapters.gitlab import GitLabAdapter
url, token, job_id, cap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
gl = GitLabAdapter(url, token, max_log_bytes=cap)
tracemalloc.start()
log = gl.job_log(1, job_id)
print(tracemalloc.get_traced_memory()[1], len(log.data), log.truncated_bytes,
      log.data.endswith(b"ERROR: the real failure\\n"))
"""


def test_huge_log_memory_is_bounded_by_the_cap():
    # Measured in a fresh interpreter: in this one, other tests' server threads allocate too.
    import subprocess
    import sys

    size, cap = 64 * 1024 * 1024, 1024 * 1024
    with FakeGitLabProcess() as proc:
        proc.add_project(PROJECT, id=1)
        job_id = proc.add_pipeline(1, jobs=[{"name": "unit"}])["jobs"][0]["id"]
        proc.set_trace(job_id, size=size, tail="ERROR: the real failure\n")
        out = subprocess.run([sys.executable, "-c", MEASURE_LOG_MEMORY, proc.url, proc.token,
                              str(job_id), str(cap)], capture_output=True, text=True, timeout=120,
                             check=True).stdout.split()
    peak, kept, dropped, tail_ok = int(out[0]), int(out[1]), int(out[2]), out[3] == "True"
    assert tail_ok
    assert kept <= cap and dropped + kept == size
    assert peak < 4 * cap  # never the whole 64 MiB


def test_slow_log_stops_at_the_deadline(fake, failed):
    job_id = failed["jobs"][1]["id"]
    fake.set_trace(job_id, size=10_000, chunk_size=1000, chunk_delay=0.1)
    gl = GitLabAdapter(fake.url, fake.token, max_log_seconds=0.25, log_chunk_bytes=1000)
    with pytest.raises(GitLabUnavailable):
        gl.job_log(1, job_id)


# -- dry run -----------------------------------------------------------------------------------
def test_dry_run_reads_but_never_writes(fake, failed, caplog):
    iid = fake.add_issue(1, "t")["iid"]
    fake.add_branch(1, "bot/fix")
    dry = GitLabAdapter(fake.url, fake.token, dry_run=True)
    job_id = failed["jobs"][1]["id"]
    assert dry.get_job(1, job_id)["status"] == "failed"  # reads still happen
    with caplog.at_level(logging.INFO, logger="devops_agent.gitlab"):
        results = [
            dry.retry_job(1, job_id),
            dry.retry_pipeline(1, failed["pipeline"]["id"]),
            dry.create_issue(1, "t", "d", ["x"]),
            dry.update_issue(1, iid, description="d"),
            dry.add_labels(1, "issue", iid, ["a"]),
            dry.remove_labels(1, "issue", iid, ["a"]),
            dry.create_note(1, "issue", iid, "hi"),
            dry.update_note(1, "issue", iid, 1, "hi"),
            dry.award_emoji(1, "issue", iid, 1, "eyes"),
            dry.create_branch(1, "b", "main"),
            dry.create_commit(1, "b", "m", [{"action": "create", "file_path": "f"}]),
            dry.create_mr(1, "bot/fix", "main", "t"),
            dry.create_deployment(1, "prod", "a" * 40, "main"),
            dry.update_deployment(1, 1, "success"),
        ]
    assert all(r["dry_run"] is True for r in results)
    assert fake.write_calls() == []
    assert [c["method"] for c in fake.calls()] == ["GET"]
    records = [r for r in caplog.records if getattr(r, "dry_run", False)]
    assert [r.action for r in records][:3] == ["retry_job", "retry_pipeline", "create_issue"]
    assert len(records) == len(results)


# -- the recording fake keeps in step with the adapter ---------------------------------------
def _public_methods(cls):
    return {n: inspect.signature(f) for n, f in vars(cls).items()
            if callable(f) and not n.startswith("_")}


def test_recording_fake_has_the_adapters_signatures():
    real = _public_methods(GitLabAdapter)
    fake = _public_methods(RecordingGitLab)
    missing = sorted(set(real) - set(fake))
    assert missing == []
    for name, sig in real.items():
        assert list(fake[name].parameters) == list(sig.parameters), name


def test_recording_fake_records_side_effects():
    gl = RecordingGitLab()
    made = gl.add_pipeline("group/proj", jobs=[{"name": "unit", "log": "x\nFAIL\n"}])
    old = made["jobs"][0]["id"]
    new = gl.retry_job("group/proj", old)
    assert new["status"] == "pending"
    assert gl.pipeline_jobs("group/proj", made["pipeline"]["id"], scope="pending")[0]["id"] == \
        new["id"]
    gl.add_issue("group/proj", 5, labels=["ci"])
    note = gl.create_note("group/proj", "issue", 5, "hello")
    gl.update_note("group/proj", "issue", 5, note["id"], "bye")
    gl.add_labels("group/proj", "issue", 5, ["flaky"])
    assert gl.effects == [f"group/proj:job_retried:{old}->{new['id']}",
                          "group/proj#5:note_created", f"group/proj#5:note_updated:{note['id']}",
                          "group/proj#5:label_added:flaky"]
    with pytest.raises(NotFound):
        gl.get_job("group/proj", 424242)
    gl.fail_next("create_note", RateLimited("slow down", retry_after=5))
    with pytest.raises(RateLimited):
        gl.create_note("group/proj", "issue", 5, "x")
    assert gl.access_level("group/proj", 7) == 0


def test_recording_fake_dry_run_records_nothing():
    gl = RecordingGitLab(dry_run=True)
    gl.add_issue("g/p", 1)
    gl.create_note("g/p", "issue", 1, "x")
    gl.add_labels("g/p", "issue", 1, ["a"])
    assert gl.effects == [] and gl.get_issue("g/p", 1)["labels"] == []


def test_from_settings(fake):
    from tasks.settings import Secret, Settings

    settings = Settings(webhook_secrets=(Secret("w"),), gitlab_url=fake.url,
                        gitlab_token=Secret(fake.token), dry_run=True)
    gl = GitLabAdapter.from_settings(settings)
    assert gl.dry_run and gl.current_user()["username"] == "devops-bot"
    with pytest.raises(GitLabError):
        GitLabAdapter.from_settings(Settings(webhook_secrets=(Secret("w"),)))
