"""The fake GitLab, driven by real python-gitlab over real HTTP: if these pass, code that works
against the fake speaks the same protocol python-gitlab expects from GitLab."""

from __future__ import annotations

import json
import time

import gitlab
import pytest
import requests

from tests.support.fake_gitlab import BOT_TOKEN, DEVELOPER, FakeGitLabProcess

PROJECT = "group/proj"


@pytest.fixture
def fake(fake_gitlab):
    fake_gitlab.add_project(PROJECT, id=1, members={7: DEVELOPER})
    return fake_gitlab


@pytest.fixture
def gl(fake):
    client = gitlab.Gitlab(fake.url, private_token=fake.token, retry_transient_errors=True,
                           timeout=5)
    yield client
    client.session.close()


@pytest.fixture
def project(gl):
    return gl.projects.get(PROJECT, lazy=True)


def failed_pipeline(fake, n_jobs=3, **kw):
    jobs = [{"name": f"job{i}", "stage": "test", "status": "failed" if i == 0 else "success"}
            for i in range(n_jobs)]
    return fake.add_pipeline(1, jobs=jobs, **kw)


# -- projects, auth, errors ----------------------------------------------------------------
def test_project_by_id_and_url_encoded_path(gl, fake):
    assert gl.projects.get(1).path_with_namespace == PROJECT
    assert gl.projects.get(PROJECT).id == 1
    assert fake.calls(path_re=r"/projects/group%2Fproj$")


def test_404_has_gitlabs_message(gl):
    with pytest.raises(gitlab.GitlabGetError) as e:
        gl.projects.get("group/missing")
    assert e.value.response_code == 404
    assert e.value.error_message == "404 Project Not Found"


@pytest.mark.parametrize("headers", [{}, {"PRIVATE-TOKEN": "wrong"}])
def test_401_without_a_valid_token(fake, headers):
    r = requests.get(f"{fake.url}/api/v4/projects/1", headers=headers, timeout=5)
    assert r.status_code == 401
    assert r.json() == {"message": "401 Unauthorized"}


def test_python_gitlab_raises_authentication_error(fake):
    bad = gitlab.Gitlab(fake.url, private_token="nope")
    with pytest.raises(gitlab.GitlabAuthenticationError):
        bad.projects.get(1)


def test_current_user_is_the_token_owner(gl, fake):
    fake.add_user("alice", id=7, token="alice-token")
    gl.auth()
    assert gl.user.username == "devops-bot"
    alice = gitlab.Gitlab(fake.url, private_token="alice-token")
    alice.auth()
    assert alice.user.id == 7


def test_missing_required_param_is_400(gl):
    # python-gitlab validates required attributes itself, so go one level down.
    with pytest.raises(gitlab.GitlabHttpError) as e:
        gl.http_post("/projects/1/issues", post_data={"description": "no title"})
    assert e.value.response_code == 400
    assert e.value.error_message == "title is missing"


# -- pagination ----------------------------------------------------------------------------
def test_get_all_follows_link_headers_across_pages(project, fake):
    pipe = failed_pipeline(fake, n_jobs=45)["pipeline"]
    jobs = project.pipelines.get(pipe["id"], lazy=True).jobs.list(get_all=True, per_page=10)
    assert len(jobs) == 45
    assert len({j.id for j in jobs}) == 45
    assert [c["query"].get("page", "1") for c in fake.calls(path_re=r"/jobs$")] == \
        ["1", "2", "3", "4", "5"]


def test_pagination_headers(fake):
    for i in range(25):
        fake.add_issue(1, f"issue {i}")
    r = requests.get(f"{fake.url}/api/v4/projects/1/issues",
                     params={"per_page": 10, "page": 2, "state": "opened"},
                     headers={"PRIVATE-TOKEN": BOT_TOKEN}, timeout=5)
    h = r.headers
    assert (h["X-Page"], h["X-Per-Page"], h["X-Total"], h["X-Total-Pages"]) == ("2", "10", "25", "3")
    assert (h["X-Next-Page"], h["X-Prev-Page"]) == ("3", "1")
    assert 'rel="next"' in h["Link"] and "state=opened" in h["Link"]
    assert len(r.json()) == 10


def test_list_without_get_all_returns_one_page(project, fake):
    for i in range(30):
        fake.add_issue(1, f"issue {i}")
    assert len(project.issues.list(per_page=20, page=1)) == 20
    assert len(list(project.issues.list(iterator=True, per_page=7))) == 30


# -- pipelines and jobs ----------------------------------------------------------------------
def test_pipeline_filters_and_latest(project, fake):
    a = fake.add_pipeline(1, ref="main", status="success")["pipeline"]
    b = fake.add_pipeline(1, ref="feature", status="failed")["pipeline"]
    c = fake.add_pipeline(1, ref="main", status="failed")["pipeline"]
    assert [p.id for p in project.pipelines.list(get_all=True, ref="main")] == [c["id"], a["id"]]
    assert [p.id for p in project.pipelines.list(get_all=True, status="failed", sort="asc")] == \
        [b["id"], c["id"]]
    assert project.pipelines.latest(ref="main").id == c["id"]
    assert project.pipelines.latest(ref="feature").id == b["id"]


def test_job_shape(project, fake):
    job = failed_pipeline(fake)["jobs"][0]
    j = project.jobs.get(job["id"])
    assert (j.name, j.stage, j.status, j.failure_reason, j.allow_failure) == \
        ("job0", "test", "failed", "script_failure", False)
    assert j.pipeline["id"] and j.pipeline["ref"] == "main" and len(j.pipeline["sha"]) == 40
    assert j.web_url.endswith(f"/group/proj/-/jobs/{job['id']}")
    ok = project.jobs.get(failed_pipeline(fake)["jobs"][1]["id"])
    assert not hasattr(ok, "failure_reason")  # GitLab exposes it on failed jobs only


def test_scope_filters_pipeline_jobs(project, fake):
    pipe = failed_pipeline(fake, n_jobs=4)["pipeline"]
    jobs = project.pipelines.get(pipe["id"], lazy=True).jobs
    assert [j.name for j in jobs.list(get_all=True, scope=["failed"])] == ["job0"]
    assert len(jobs.list(get_all=True, scope=["failed", "success"])) == 4


def test_retry_creates_a_new_pending_job_in_the_same_pipeline(project, fake):
    made = failed_pipeline(fake)
    old = made["jobs"][0]
    new = project.jobs.get(old["id"], lazy=True).retry()
    assert new["id"] != old["id"]
    assert new["status"] == "pending" and new["name"] == old["name"]
    assert new["pipeline"]["id"] == made["pipeline"]["id"]
    listed = project.pipelines.get(made["pipeline"]["id"], lazy=True).jobs.list(get_all=True)
    assert new["id"] in [j.id for j in listed] and old["id"] not in [j.id for j in listed]
    assert project.pipelines.get(made["pipeline"]["id"]).status == "running"
    fake.set_job_status(new["id"], "success")
    assert project.pipelines.get(made["pipeline"]["id"]).status == "success"
    assert f"{PROJECT}:job_retried:{old['id']}->{new['id']}" in fake.side_effects()
    assert len(fake.calls(method="POST", path_re=r"/jobs/\d+/retry")) == 1


def test_running_job_is_not_retryable(project, fake):
    pipe = fake.add_pipeline(1, status="running",
                             jobs=[{"name": "slow", "status": "running"}])
    with pytest.raises(gitlab.GitlabJobRetryError) as e:
        project.jobs.get(pipe["jobs"][0]["id"], lazy=True).retry()
    assert e.value.response_code == 403


def test_trace_is_plain_text(project, fake):
    job = failed_pipeline(fake)["jobs"][0]
    fake.set_trace(job["id"], text="step 1\nERROR: boom\n")
    assert project.jobs.get(job["id"], lazy=True).trace() == b"step 1\nERROR: boom\n"
    r = requests.get(f"{fake.url}/api/v4/projects/1/jobs/{job['id']}/trace",
                     headers={"PRIVATE-TOKEN": BOT_TOKEN}, timeout=5)
    assert r.headers["Content-Type"].startswith("text/plain")


def test_huge_trace_streams_with_its_tail(project, fake):
    job = failed_pipeline(fake)["jobs"][0]
    fake.set_trace(job["id"], size=20 * 1024 * 1024, tail="FATAL: out of memory\n")
    total, last = 0, b""
    for chunk in project.jobs.get(job["id"], lazy=True).trace(streamed=True, iterator=True,
                                                              chunk_size=1 << 20):
        total += len(chunk)
        last = (last + chunk)[-100:]
    assert total == 20 * 1024 * 1024
    assert last.endswith(b"\nFATAL: out of memory\n")


def test_slow_trace(project, fake):
    job = failed_pipeline(fake)["jobs"][0]
    fake.set_trace(job["id"], size=4000, chunk_size=1000, chunk_delay=0.1)
    started = time.monotonic()
    assert len(project.jobs.get(job["id"], lazy=True).trace()) == 4000
    assert time.monotonic() - started >= 0.35


def test_test_report(project, fake):
    pipe = failed_pipeline(fake)["pipeline"]
    report = {"total_time": 1.5, "total_count": 2, "success_count": 1, "failed_count": 1,
              "skipped_count": 0, "error_count": 0,
              "test_suites": [{"name": "unit", "test_cases": [
                  {"name": "test_a", "classname": "t", "status": "failed",
                   "system_output": "AssertionError"}]}]}
    fake.set_test_report(1, pipe["id"], report)
    got = project.pipelines.get(pipe["id"], lazy=True).test_report.get()
    assert got.failed_count == 1 and got.test_suites[0]["name"] == "unit"


# -- issues, labels, notes -----------------------------------------------------------------
def test_issue_filters(project, fake):
    fake.add_issue(1, "Flaky test_x", labels=["ci", "flaky"])
    fake.add_issue(1, "Broken build", labels=["ci"], description="flaky here too")
    fake.add_issue(1, "Old", labels=["ci", "flaky"], state="closed")
    titles = lambda **kw: sorted(i.title for i in project.issues.list(get_all=True, **kw))  # noqa: E731
    assert titles(labels="ci,flaky", state="opened") == ["Flaky test_x"]
    assert titles(labels=["ci", "flaky"]) == ["Flaky test_x", "Old"]
    assert titles(search="FLAKY", state="opened") == ["Broken build", "Flaky test_x"]
    assert titles(state="closed") == ["Old"]


def test_labels_add_remove_and_replace(project, fake):
    issue = project.issues.create({"title": "t", "labels": "a,b"})
    assert project.issues.update(issue.iid, {"add_labels": "c", "remove_labels": "a"})[
        "labels"] == ["b", "c"]
    assert project.issues.get(issue.iid).labels == ["b", "c"]
    project.issues.update(issue.iid, {"labels": "z"})
    assert project.issues.get(issue.iid).labels == ["z"]
    effects = fake.side_effects()
    assert f"{PROJECT}#{issue.iid}:label_added:c" in effects
    assert f"{PROJECT}#{issue.iid}:label_removed:a" in effects
    assert {lab.name for lab in project.labels.list(get_all=True)} >= {"a", "b", "c", "z"}
    # Label changes are resource label events in GitLab, not notes.
    assert issue.notes.list(get_all=True) == []


def test_seeded_system_notes_are_listed(project, fake):
    issue = fake.add_issue(1, "t")
    fake.add_note(1, "issue", issue["iid"], "changed the description", system=True)
    (note,) = project.issues.get(issue["iid"], lazy=True).notes.list(get_all=True)
    assert note.system is True


def test_close_issue(project):
    issue = project.issues.create({"title": "t"})
    assert project.issues.update(issue.iid, {"state_event": "close"})["state"] == "closed"


def test_notes_create_edit_and_order(project, fake):
    issue = project.issues.create({"title": "t"})
    first = issue.notes.create({"body": "first"})
    issue.notes.create({"body": "second"})
    assert first.author["username"] == "devops-bot" and first.system is False
    first.body = "first, edited"
    first.save()
    assert issue.notes.get(first.id).body == "first, edited"
    assert [n.body for n in issue.notes.list(get_all=True)] == ["second", "first, edited"]
    assert [n.body for n in issue.notes.list(get_all=True, sort="asc")] == \
        ["first, edited", "second"]
    assert f"{PROJECT}#{issue.iid}:note_created" in fake.side_effects()


def test_cannot_edit_someone_elses_note(project, fake):
    fake.add_member(1, 1, DEVELOPER)  # the bot as a Developer: not the author, not a Maintainer
    issue = fake.add_issue(1, "t")
    fake.add_user("bob", id=9)
    note = fake.add_note(1, "issue", issue["iid"], "/deploy prod", author_id=9)
    with pytest.raises(gitlab.GitlabUpdateError) as e:
        project.issues.get(issue["iid"], lazy=True).notes.update(note["id"], {"body": "x"})
    assert e.value.response_code == 403
    assert e.value.error_message == "403 Forbidden"


def test_maintainer_may_edit_anyones_note_but_no_one_a_system_note(project, fake):
    # "Edit comments (posted by any user)": Maintainer (doc/user/permissions.md).
    issue = fake.add_issue(1, "t")
    fake.add_user("bob", id=9)
    note = fake.add_note(1, "issue", issue["iid"], "/deploy prod", author_id=9)
    notes = project.issues.get(issue["iid"], lazy=True).notes
    assert notes.update(note["id"], {"body": "edited by a maintainer"})["body"] == \
        "edited by a maintainer"
    system = fake.add_note(1, "issue", issue["iid"], "changed the description", system=True)
    with pytest.raises(gitlab.GitlabUpdateError) as e:
        notes.update(system["id"], {"body": "x"})
    assert e.value.response_code == 403


def test_note_pagination_and_mr_notes(project, fake):
    fake.add_branch(1, "feature")
    mr = fake.add_mr(1, "MR", "feature")
    for i in range(12):
        fake.add_note(1, "mr", mr["iid"], f"n{i}")
    notes = project.mergerequests.get(mr["iid"], lazy=True).notes.list(get_all=True, per_page=5)
    assert len(notes) == 12 and notes[0].noteable_type == "MergeRequest"


def test_award_emoji_on_note(project, fake):
    issue = project.issues.create({"title": "t"})
    note = issue.notes.create({"body": "/retry"})
    award = note.awardemojis.create({"name": "eyes"})
    assert award.name == "eyes" and award.awardable_type == "Note"
    with pytest.raises(gitlab.GitlabCreateError):
        note.awardemojis.create({"name": "eyes"})
    assert f"{PROJECT}#{issue.iid}:emoji_awarded:{note.id}:eyes" in fake.side_effects()


# -- merge requests --------------------------------------------------------------------------
def test_mr_closes_issues_and_approvals(project, fake):
    fake.add_issue(1, "one")
    fake.add_issue(1, "two")
    fake.add_branch(1, "fix")
    mr = project.mergerequests.create({"source_branch": "fix", "target_branch": "main",
                                       "title": "Fix", "description": "Fixes #2, closes #99"})
    assert [i.iid for i in mr.closes_issues()] == [2]
    fake.add_user("rev", id=11)
    fake.add_member(1, 11, DEVELOPER)
    # Free: `approved` means "has an approval" and there are no approval rules.
    got = mr.approvals.get()
    assert got.approved is False and not hasattr(got, "approvals_left")
    fake.approve_mr(1, mr.iid, 11)
    got = mr.approvals.get()
    assert got.approved is True and got.approved_by[0]["user"]["username"] == "rev"


def test_premium_approval_rules_count(gl, fake):
    fake.add_project("group/prem", id=2, tier="premium", members={11: DEVELOPER})
    fake.add_branch(2, "fix")
    seeded = fake.add_mr(2, "needs review", "fix", approvals_required=1)
    m = gl.projects.get("group/prem", lazy=True).mergerequests.get(seeded["iid"], lazy=True)
    got = m.approvals.get()
    assert (got.approved, got.approvals_required, got.approvals_left) == (False, 1, 1)
    assert gl.projects.get(2, lazy=True).mergerequests.get(seeded["iid"]).detailed_merge_status \
        == "not_approved"
    fake.approve_mr(2, seeded["iid"], 11)
    got = m.approvals.get()
    assert got.approved and got.approvals_left == 0
    assert got.approved_by[0]["user"]["id"] == 11


def test_duplicate_open_mr_is_409(project, fake):
    fake.add_branch(1, "fix")
    data = {"source_branch": "fix", "target_branch": "main", "title": "Fix"}
    project.mergerequests.create(data)
    with pytest.raises(gitlab.GitlabCreateError) as e:
        project.mergerequests.create(data)
    assert e.value.response_code == 409


# -- members, freezes, repository, deployments ---------------------------------------------
def test_members_all(project):
    assert project.members_all.get(7).access_level == DEVELOPER
    with pytest.raises(gitlab.GitlabGetError) as e:
        project.members_all.get(12345)
    assert e.value.response_code == 404


def test_freeze_periods(gl, fake):
    fake.add_freeze_period(1, "0 23 * * 5", "0 7 * * 1", "Europe/Berlin")
    periods = gl.http_list(f"/projects/{PROJECT.replace('/', '%2F')}/freeze_periods",
                           get_all=True)
    assert periods[0]["cron_timezone"] == "Europe/Berlin"


def test_branch_and_commit_with_start_branch(project, fake):
    commit = project.commits.create({
        "branch": "bot/fix", "start_branch": "main", "commit_message": "Fix things\n\nbody",
        "actions": [{"action": "create", "file_path": "a.txt", "content": "hello"}]})
    assert len(commit.id) == 40 and commit.title == "Fix things"
    assert project.branches.get("bot/fix").commit["id"] == commit.id
    with pytest.raises(gitlab.GitlabCreateError):  # the file now exists
        project.commits.create({"branch": "bot/fix", "commit_message": "again",
                                "actions": [{"action": "create", "file_path": "a.txt"}]})
    with pytest.raises(gitlab.GitlabCreateError):  # no branch, no start_branch
        project.commits.create({"branch": "nope", "commit_message": "m",
                                "actions": [{"action": "create", "file_path": "b"}]})
    branch = project.branches.create({"branch": "other", "ref": "main"})
    assert branch.name == "other"
    with pytest.raises(gitlab.GitlabCreateError):
        project.branches.create({"branch": "other", "ref": "main"})
    with pytest.raises(gitlab.GitlabGetError):
        project.branches.get("missing")
    files = fake.snapshot()["projects"][0]["branches"]["bot/fix"]["files"]
    assert files == {"a.txt": "hello"}


def test_deployments(project, fake):
    d = project.deployments.create({"environment": "prod", "sha": "a" * 40, "ref": "main",
                                    "tag": False, "status": "running"})
    assert d.status == "running" and d.environment["name"] == "prod"
    project.deployments.update(d.id, {"status": "success"})
    assert project.deployments.get(d.id).status == "success"
    assert f"{PROJECT}:deployment_updated:{d.id}:success" in fake.side_effects()


# -- faults ----------------------------------------------------------------------------------
def test_429_with_retry_after_is_retried_by_python_gitlab(project, fake):
    fake.fault(r"/projects/1$", method="GET", status=429, retry_after=0, count=2)
    assert project.manager.get(1).id == 1
    statuses = [c["status"] for c in fake.calls(path_re=r"/projects/1$")]
    assert statuses == [429, 429, 200]
    r = requests.get(f"{fake.url}/api/v4/user", headers={"PRIVATE-TOKEN": BOT_TOKEN}, timeout=5)
    assert r.status_code == 200  # the fault was used up, and only matched its path


def test_429_headers(fake):
    fake.fault("/user", status=429, retry_after=7)
    r = requests.get(f"{fake.url}/api/v4/user", headers={"PRIVATE-TOKEN": BOT_TOKEN}, timeout=5)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.headers["RateLimit-Remaining"] == "0"


def test_transient_5xx_then_success(gl, fake):
    fake.fault("/user", status=500)
    fake.fault("/user", status=502)
    assert gl.http_get("/user")["username"] == "devops-bot"
    assert [c["status"] for c in fake.calls(path_re="/user")] == [500, 502, 200]


def test_persistent_fault_and_clear(gl, fake):
    fake.fault("/user", status=503, count=None)
    with pytest.raises(gitlab.GitlabHttpError):
        gl.http_get("/user", max_retries=2)
    assert len(fake.calls(path_re="/user")) == 3
    fake.clear_faults()
    assert gl.http_get("/user")["id"] == 1


def test_delay_fault_triggers_client_timeout(fake):
    fake.fault("/user", delay=1.0)
    slow = gitlab.Gitlab(fake.url, private_token=fake.token, timeout=0.3)
    with pytest.raises(requests.exceptions.Timeout):
        slow.http_get("/user")


def test_calls_record_body_and_status(project, fake):
    issue = project.issues.create({"title": "t", "labels": "x"})
    (call,) = fake.calls(method="POST", path_re=r"/issues$")
    assert call["json"]["title"] == "t" and call["status"] == 201
    assert call["path"] == "/api/v4/projects/group%2Fproj/issues" and issue.iid == 1


# -- subprocess mode -------------------------------------------------------------------------
@pytest.mark.integration  # the fake GitLab as a process, over HTTP
def test_subprocess_mode_with_seed_file(tmp_path):
    seed = {"users": [{"username": "alice", "id": 7, "token": "alice-token"}],
            "projects": [{"path": "g/p", "id": 3, "members": {"7": 40},
                          "pipelines": [{"status": "failed", "jobs": [{"name": "build"}]}],
                          "issues": [{"title": "seeded", "labels": ["bug"]}]}]}
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed))
    with FakeGitLabProcess(seed_file=seed_file) as proc:
        gl = gitlab.Gitlab(proc.url, private_token=BOT_TOKEN)
        p = gl.projects.get("g/p", lazy=True)
        assert p.issues.get(1).labels == ["bug"]
        assert p.members_all.get(7).access_level == 40
        job = p.jobs.list(get_all=True)[0]
        proc.set_trace(job.id, text="compile error\n")
        assert p.jobs.get(job.id, lazy=True).trace() == b"compile error\n"
        proc.fault("/jobs/", status=500, count=1)
        with pytest.raises(gitlab.GitlabGetError):
            p.jobs.get(job.id)
        assert proc.calls(method="GET", path_re=r"/jobs/\d+$")[-1]["status"] == 500
        gl.session.close()


def test_control_client_attaches_to_a_running_fake(fake_gitlab_server):
    from tests.support.fake_gitlab import FakeGitLabControl

    other = FakeGitLabControl(fake_gitlab_server.url)
    other.reset()
    assert other.add_project("x/y", id=5)["path_with_namespace"] == "x/y"
    assert other.snapshot()["projects"][0]["id"] == 5
    with pytest.raises(RuntimeError):
        other.op("no_such_op")
