"""The GitLab adapter against the fake GitLab over real HTTP: plain data out, typed errors,
bounded retries (counted by the fake), tail-capped logs, dry-run."""

from __future__ import annotations

import inspect
import logging
import socket
import traceback

import pytest

from tasks.gitlab.client import (
    Forbidden,
    GitLabAdapter,
    GitLabError,
    GitLabUnavailable,
    JobLog,
    NotFound,
    RateLimited,
)
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
    commit = gl.create_commit(1, "bot/fix", "Fix flaky test",
                              [{"action": "create", "file_path": "fix.txt", "content": "x"}],
                              start_branch="main")
    gl.create_commit(1, "bot/other", "From main",
                     [{"action": "create", "file_path": "o.txt", "content": "y"}],
                     start_branch="main")
    mr = gl.create_mr(1, "bot/fix", "main", "Fix", "Closes #1", labels=["bot"])
    assert gl.get_mr(1, mr["iid"])["sha"] == commit["id"]
    assert [i["iid"] for i in gl.mr_closes_issues(1, mr["iid"])] == [1]
    approvals = gl.mr_approvals(1, mr["iid"])  # Free: approved means "has an approval"
    assert approvals["approved"] is False and approvals["approved_by"] == []
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


@pytest.mark.integration  # a socket to a port nothing listens on
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
    _data, dropped = log  # unpacks as (bytes, truncated_bytes)
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
from tasks.gitlab.client import GitLabAdapter
url, token, job_id, cap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
gl = GitLabAdapter(url, token, max_log_bytes=cap)
tracemalloc.start()
log = gl.job_log(1, job_id)
print(tracemalloc.get_traced_memory()[1], len(log.data), log.truncated_bytes,
      log.data.endswith(b"ERROR: the real failure\\n"))
"""


@pytest.mark.integration  # a local HTTP server streaming the log
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
            dry.create_issue(1, "t", "d", ["x"]),
            dry.update_issue(1, iid, description="d"),
            dry.add_labels(1, "issue", iid, ["a"]),
            dry.remove_labels(1, "issue", iid, ["a"]),
            dry.create_note(1, "issue", iid, "hi"),
            dry.update_note(1, "issue", iid, 1, "hi"),
            dry.award_emoji(1, "issue", iid, 1, "eyes"),
            dry.create_commit(1, "b", "m", [{"action": "create", "file_path": "f"}]),
            dry.create_mr(1, "bot/fix", "main", "t"),
            dry.create_deployment(1, "prod", "a" * 40, "main"),
            dry.update_deployment(1, 1, "success"),
        ]
    assert all(r["dry_run"] is True for r in results)
    assert fake.write_calls() == []
    assert [c["method"] for c in fake.calls()] == ["GET"]
    records = [r for r in caplog.records if getattr(r, "dry_run", False)]
    assert [r.action for r in records][:3] == ["retry_job", "create_issue", "update_issue"]
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
    from tasks.config.settings import Secret, Settings

    settings = Settings(webhook_secrets=(Secret("w"),), gitlab_url=fake.url,
                        gitlab_token=Secret(fake.token), dry_run=True)
    gl = GitLabAdapter.from_settings(settings)
    assert gl.dry_run and gl.current_user()["username"] == "devops-bot"
    with pytest.raises(GitLabError):
        GitLabAdapter.from_settings(Settings(webhook_secrets=(Secret("w"),)))


# -- strict per-endpoint answers, as python-gitlab tests itself ---------------------------------
# Each test registers exactly the requests the adapter method must make (method, path, query,
# JSON body), answered with payloads shaped like GitLab's API documentation; the mock fails on
# any other request and, at the end, on any registered one that was not made. `responses` is a
# dev dependency (pyproject's `dev` extra).
BASE = "https://gitlab.example"
API = f"{BASE}/api/v4"
ENC = "group%2Fproj"

DOC_USER = {"id": 1, "username": "devops-bot", "name": "DevOps Bot", "state": "active",
            "locked": False, "avatar_url": None, "web_url": f"{BASE}/devops-bot"}
DOC_PIPELINE = {"id": 46, "iid": 11, "project_id": 1, "status": "failed", "ref": "main",
                "sha": "a91957a858320c0e17f3a0eca7cfacbff50ea29a",
                "before_sha": "a91957a858320c0e17f3a0eca7cfacbff50ea29a", "tag": False,
                "yaml_errors": None, "user": DOC_USER, "created_at": "2016-08-11T11:28:34.085Z",
                "updated_at": "2016-08-11T11:32:35.169Z", "started_at": None,
                "finished_at": "2016-08-11T11:32:35.145Z", "committed_at": None,
                "duration": 123, "queued_duration": 1, "coverage": None,
                "web_url": f"{BASE}/group/proj/-/pipelines/46", "source": "push"}
DOC_JOB = {"id": 7, "status": "failed", "stage": "test", "name": "rspec:other",
           "ref": "main", "tag": False, "coverage": None, "allow_failure": False,
           "created_at": "2015-12-24T15:51:21.880Z", "started_at": "2015-12-24T17:54:30.733Z",
           "finished_at": "2015-12-24T17:54:31.198Z", "erased_at": None, "duration": 0.465,
           "queued_duration": 0.010, "failure_reason": "script_failure", "user": DOC_USER,
           "pipeline": {"id": 6, "project_id": 1, "ref": "main",
                        "sha": "0ff3ae198f8601a285adcf5c0fff204ee6fba5fd", "status": "failed"},
           "web_url": f"{BASE}/group/proj/-/jobs/7", "project": {"ci_job_token_scope_enabled":
                                                                False}, "archived": False}
DOC_ISSUE = {"id": 76, "iid": 6, "project_id": 1, "title": "Consequatur vero maxime",
             "description": "Ratione dolores", "state": "opened", "labels": ["foo"],
             "author": DOC_USER, "created_at": "2016-01-04T15:31:51.081Z",
             "updated_at": "2016-01-04T15:31:51.081Z", "web_url": f"{BASE}/group/proj/-/issues/6"}
DOC_MR = {"id": 1, "iid": 1, "project_id": 1, "title": "test1", "description": "fixed login page",
          "state": "opened", "source_branch": "test1", "target_branch": "main",
          "source_project_id": 1, "target_project_id": 1, "labels": [], "draft": False,
          "sha": "8888888888888888888888888888888888888888", "merge_status": "can_be_merged",
          "detailed_merge_status": "mergeable", "author": DOC_USER,
          "web_url": f"{BASE}/group/proj/-/merge_requests/1"}
DOC_NOTE = {"id": 302, "body": "closed", "author": DOC_USER, "created_at": "2013-10-02T09:22:45Z",
            "updated_at": "2013-10-02T10:22:45Z", "system": False, "noteable_id": 377,
            "noteable_type": "Issue", "noteable_iid": 377, "resolvable": False,
            "confidential": False, "internal": False}


@pytest.fixture
def mock():
    responses = pytest.importorskip("responses")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield Strict(rsps, responses)


class Strict:
    """`expect(method, path, query=..., json=..., status=..., body=..., headers=...)`."""

    def __init__(self, rsps, responses) -> None:
        self.rsps, self.m = rsps, responses.matchers

    def expect(self, method, path, *, query=None, json=None, status=200, body=None,
               headers=None, raw=None, exc=None):
        match = [self.m.query_param_matcher(query or {})]
        if json is not None:
            match.append(self.m.json_params_matcher(json))
        kw = {"status": status, "headers": headers or {}, "match": match}
        if exc is not None:
            kw = {"body": exc, "match": match}
        elif raw is not None:
            kw["body"], kw["content_type"] = raw, "text/plain"
        else:
            kw["json"] = body if body is not None else {}
        self.rsps.add(method, f"{API}{path}", **kw)

    @property
    def calls(self):
        return self.rsps.calls


@pytest.fixture
def strict_gl():
    adapter = GitLabAdapter(BASE, "secret-token", timeout=2, max_retries=2, per_page=100)
    yield adapter
    adapter.close()


def test_strict_reads(mock, strict_gl):
    gl = strict_gl
    mock.expect("GET", "/user", body=DOC_USER)
    mock.expect("GET", f"/projects/{ENC}", body={"id": 1, "path_with_namespace": PROJECT})
    mock.expect("GET", "/projects/1/members/all/7", body={**DOC_USER, "id": 7, "access_level": 30})
    mock.expect("GET", "/projects/1/members/all/8", status=404, body={"message": "404 Not found"})
    mock.expect("GET", f"/projects/{ENC}/freeze_periods", query={"per_page": "100"},
                body=[{"id": 1, "freeze_start": "0 23 * * 5", "freeze_end": "0 7 * * 1",
                       "cron_timezone": "UTC"}])
    mock.expect("GET", "/projects/1/pipelines/46", body=DOC_PIPELINE)
    mock.expect("GET", "/projects/1/pipelines/latest", query={"ref": "main"}, body=DOC_PIPELINE)
    mock.expect("GET", "/projects/1/pipelines/latest", query={"ref": "gone"}, status=404,
                body={"message": "404 Not found"})
    mock.expect("GET", "/projects/1/pipelines/46/jobs",
                query={"scope[]": ["failed", "canceled"], "per_page": "100"}, body=[DOC_JOB])
    mock.expect("GET", "/projects/1/jobs/7", body=DOC_JOB)
    mock.expect("GET", "/projects/1/pipelines/46/test_report",
                body={"total_time": 5, "total_count": 1, "success_count": 0, "failed_count": 1,
                      "skipped_count": 0, "error_count": 0, "test_suites": []})
    assert gl.current_user()["username"] == "devops-bot"
    assert gl.get_project(PROJECT)["id"] == 1
    assert gl.access_level(1, 7) == 30 and gl.access_level(1, 8) == 0
    assert gl.freeze_periods(PROJECT)[0]["cron_timezone"] == "UTC"
    assert gl.get_pipeline(1, 46)["status"] == "failed"
    assert gl.latest_pipeline(1, "main")["id"] == 46 and gl.latest_pipeline(1, "gone") is None
    assert gl.pipeline_jobs(1, 46, scope=["failed", "canceled"])[0]["name"] == "rspec:other"
    assert gl.get_job(1, 7)["failure_reason"] == "script_failure"
    assert gl.test_report(1, 46)["failed_count"] == 1
    assert all(c.request.headers["PRIVATE-TOKEN"] == "secret-token" for c in mock.calls)


def test_strict_list_follows_link_pages(mock, strict_gl):
    nxt = f"{API}/projects/1/pipelines/46/jobs?page=2&per_page=100"
    mock.expect("GET", "/projects/1/pipelines/46/jobs", query={"per_page": "100"},
                body=[DOC_JOB], headers={"Link": f'<{nxt}>; rel="next"', "X-Next-Page": "2",
                                         "X-Page": "1", "X-Total-Pages": "2"})
    mock.expect("GET", "/projects/1/pipelines/46/jobs", query={"page": "2", "per_page": "100"},
                body=[{**DOC_JOB, "id": 8}], headers={"X-Page": "2", "X-Total-Pages": "2"})
    assert [j["id"] for j in strict_gl.pipeline_jobs(1, 46)] == [7, 8]


def test_strict_recent_jobs_stops_at_the_limit(mock, strict_gl):
    nxt = f"{API}/projects/1/jobs?page=2&per_page=100"
    mock.expect("GET", "/projects/1/jobs", query={"scope[]": "failed", "per_page": "100"},
                body=[DOC_JOB, {**DOC_JOB, "id": 6}], headers={"Link": f'<{nxt}>; rel="next"'})
    got = list(strict_gl.recent_jobs(1, ["failed"], limit=2))  # page 2 is never asked for
    assert [j["id"] for j in got] == [7, 6]


def test_strict_job_log_is_streamed_text(mock, strict_gl):
    mock.expect("GET", "/projects/1/jobs/7/trace", raw=b"$ make\nerror: boom\n")
    assert strict_gl.job_log(1, 7) == JobLog(b"$ make\nerror: boom\n", 0)


def test_strict_issue_and_mr_requests(mock, strict_gl):
    gl = strict_gl
    mock.expect("GET", "/projects/1/issues/6", body=DOC_ISSUE)
    mock.expect("GET", "/projects/1/issues",
                query={"labels": "flaky,ci", "search": "test_x", "state": "opened",
                       "per_page": "100"}, body=[DOC_ISSUE])
    mock.expect("GET", "/projects/1/issues", query={"per_page": "100"}, body=[])
    mock.expect("POST", "/projects/1/issues", status=201, body=DOC_ISSUE,
                json={"title": "t", "description": "d", "labels": "a,b"})
    mock.expect("PUT", "/projects/1/issues/6", body=DOC_ISSUE,
                json={"description": "new", "labels": "x,y", "state_event": "close"})
    mock.expect("PUT", "/projects/1/issues/6", body=DOC_ISSUE, json={"add_labels": "seen"})
    mock.expect("PUT", "/projects/1/merge_requests/1", body=DOC_MR, json={"remove_labels": "old"})
    mock.expect("PUT", "/projects/1/merge_requests/1", body=DOC_MR,
                json={"add_labels": "ci::passed", "remove_labels": "ci::failed"})
    mock.expect("GET", "/projects/1/merge_requests/1", body=DOC_MR)
    mock.expect("GET", "/projects/1/merge_requests/1/closes_issues", query={"per_page": "100"},
                body=[DOC_ISSUE])
    mock.expect("GET", "/projects/1/merge_requests/1/approvals",
                body={"approved": True, "approvals_required": 1, "approvals_left": 0,
                      "approved_by": [{"user": DOC_USER}]})
    mock.expect("POST", "/projects/1/merge_requests", status=201, body=DOC_MR,
                json={"source_branch": "test1", "target_branch": "main", "title": "test1",
                      "description": "", "labels": "bot", "remove_source_branch": True})
    mock.expect("GET", "/projects/1/merge_requests/1/resource_label_events",
                query={"per_page": "100"},
                body=[{"id": 142, "user": DOC_USER, "created_at": "2018-08-20T13:38:20.077Z",
                       "resource_type": "MergeRequest", "resource_id": 1,
                       "label": {"id": 73, "name": "a1", "color": "#34495E",
                                 "description": ""}, "action": "add"}])
    assert gl.get_issue(1, 6)["iid"] == 6
    assert gl.find_issues(1, labels=["flaky", "ci"], search="test_x")[0]["id"] == 76
    assert gl.find_issues(1, state="all") == []
    assert gl.create_issue(1, "t", "d", ["a", "b"])["iid"] == 6
    gl.update_issue(1, 6, description="new", labels=["x", "y"], state_event="close")
    gl.add_labels(1, "issue", 6, ["seen"])
    gl.remove_labels(1, "mr", 1, ["old"])
    gl.relabel(1, "mr", 1, add=["ci::passed"], remove=["ci::failed"])
    assert gl.get_mr(1, 1)["sha"] == DOC_MR["sha"]
    assert gl.mr_closes_issues(1, 1)[0]["iid"] == 6
    assert gl.mr_approvals(1, 1)["approvals_left"] == 0
    assert gl.create_mr(1, "test1", "main", "test1", labels=["bot"])["iid"] == 1
    assert gl.label_events(1, "mr", 1)[0]["label"]["name"] == "a1"


def test_strict_notes_emoji_repository_deployments_and_retries(mock, strict_gl):
    gl = strict_gl
    mock.expect("GET", "/projects/1/issues/6/notes",
                query={"sort": "asc", "order_by": "created_at", "per_page": "100"},
                body=[DOC_NOTE])
    mock.expect("POST", "/projects/1/merge_requests/1/notes", status=201, body=DOC_NOTE,
                json={"body": "hello"})
    mock.expect("PUT", "/projects/1/issues/6/notes/302", body={**DOC_NOTE, "body": "edited"},
                json={"body": "edited"})
    mock.expect("POST", "/projects/1/issues/6/notes/302/award_emoji", status=201,
                json={"name": "eyes"},
                body={"id": 4, "name": "eyes", "user": DOC_USER, "awardable_id": 302,
                      "awardable_type": "Note"})
    mock.expect("POST", "/projects/1/repository/commits", status=201,
                json={"branch": "bot/fix", "commit_message": "m", "start_branch": "main",
                      "actions": [{"action": "create", "file_path": "a", "content": "x"}]},
                body={"id": "ed899a2f4b50b4370feeea94676502b42383c746", "title": "m"})
    mock.expect("POST", "/projects/1/deployments", status=201,
                json={"environment": "production", "sha": "a" * 40, "ref": "main",
                      "tag": False, "status": "running"},
                body={"id": 42, "status": "running", "environment": {"name": "production"}})
    mock.expect("PUT", "/projects/1/deployments/42", json={"status": "success"},
                body={"id": 42, "status": "success"})
    mock.expect("POST", "/projects/1/jobs/7/retry", status=201,
                body={**DOC_JOB, "id": 8, "status": "pending"})
    assert gl.list_notes(1, "issue", 6)[0]["id"] == 302
    assert gl.create_note(1, "mr", 1, "hello")["id"] == 302
    assert gl.update_note(1, "issue", 6, 302, "edited")["body"] == "edited"
    assert gl.award_emoji(1, "issue", 6, 302, "eyes")["name"] == "eyes"
    gl.create_commit(1, "bot/fix", "m", [{"action": "create", "file_path": "a", "content": "x"}],
                     start_branch="main")
    assert gl.create_deployment(1, "production", "a" * 40, "main")["id"] == 42
    assert gl.update_deployment(1, 42, "success")["status"] == "success"
    assert gl.retry_job(1, 7)["id"] == 8


@pytest.mark.parametrize("status,body,error", [
    (404, {"message": "404 Job Not Found"}, NotFound),
    (403, {"message": "403 Forbidden"}, Forbidden),
    (401, {"message": "401 Unauthorized"}, Forbidden),
    (409, {"message": ["Another open merge request already exists"]}, GitLabError),
    (400, {"error": "scope does not have a valid value"}, GitLabError),
])
def test_strict_error_translation(mock, strict_gl, status, body, error):
    mock.expect("GET", "/projects/1/jobs/7", status=status, body=body)
    with pytest.raises(error) as e:
        strict_gl.get_job(1, 7)
    assert type(e.value) is error and e.value.status == status
    assert str(next(iter(body.values()))).strip("[]'") in str(e.value)
    assert "secret-token" not in str(e.value)


def test_strict_409_on_create(mock, strict_gl):
    mock.expect("POST", "/projects/1/merge_requests", status=409,
                body={"message": ["Another open merge request already exists for this source "
                                  "branch: !1"]})
    with pytest.raises(GitLabError) as e:
        strict_gl.create_mr(1, "test1", "main", "t")
    assert e.value.status == 409 and not isinstance(e.value, (NotFound, Forbidden))


def test_strict_429_retry_after_then_success(mock, strict_gl):
    mock.expect("GET", "/projects/1/jobs/7", status=429, headers={"Retry-After": "0"},
                body={"message": "Retry later"})
    mock.expect("GET", "/projects/1/jobs/7", body=DOC_JOB)
    assert strict_gl.get_job(1, 7)["id"] == 7
    assert [c.response.status_code for c in mock.calls] == [429, 200]


def test_strict_429_long_retry_after_fails_at_once(mock, strict_gl):
    mock.expect("POST", "/projects/1/jobs/7/retry", status=429, headers={"Retry-After": "120"},
                body={"message": "Retry later"})
    with pytest.raises(RateLimited) as e:
        strict_gl.retry_job(1, 7)
    assert e.value.retry_after == 120 and len(mock.calls) == 1


def test_strict_5xx_get_is_retried_then_unavailable(mock, strict_gl):
    for _ in range(3):  # 1 + max_retries
        mock.expect("GET", "/projects/1/jobs/7", status=502, body={"message": "502 Bad Gateway"})
    with pytest.raises(GitLabUnavailable) as e:
        strict_gl.get_job(1, 7)
    assert e.value.status == 502 and len(mock.calls) == 3


def test_strict_5xx_post_is_not_resent(mock, strict_gl):
    mock.expect("POST", "/projects/1/issues/6/notes", status=500,
                body={"message": "500 Internal Server Error"})
    with pytest.raises(GitLabUnavailable):
        strict_gl.create_note(1, "issue", 6, "hi")
    assert len(mock.calls) == 1


def test_strict_timeouts(mock, strict_gl):
    import requests as _requests

    # A GET that times out is retried (bounded: 1 + max_retries attempts), then unavailable.
    for exc in (_requests.exceptions.ReadTimeout("slow"),) * 3:
        mock.expect("GET", "/projects/1/jobs/7", exc=exc)
    with pytest.raises(GitLabUnavailable) as e:
        strict_gl.get_job(1, 7)
    assert "ReadTimeout" in str(e.value) and len(mock.calls) == 3
    for _ in range(3):
        mock.expect("GET", "/projects/1/pipelines/46",
                    exc=_requests.exceptions.ConnectTimeout("unreachable"))
    with pytest.raises(GitLabUnavailable):
        strict_gl.get_pipeline(1, 46)
    assert len(mock.calls) == 6
    # A POST that timed out may have been applied: never sent twice.
    mock.expect("POST", "/projects/1/jobs/7/retry", exc=_requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(GitLabUnavailable):
        strict_gl.retry_job(1, 7)
    assert len(mock.calls) == 7
