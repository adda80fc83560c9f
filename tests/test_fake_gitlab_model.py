"""What the fake GitLab models beyond the protocol: scoped labels, permissions, notes and
timestamps, merge requests and approvals, pipelines and jobs for backtests, repository files,
CI lint, snippets, users; and that the recording fake answers exactly as the HTTP one."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
import requests

from tasks.gitlab.client import Forbidden, GitLabAdapter, GitLabError, NotFound
from tests.support.fake_gitlab import BOT_TOKEN, DEVELOPER, GUEST, PLANNER, REPORTER
from tests.support.fake_gitlab.ci_lint import lint, parse_duration
from tests.support.recording_gitlab import RecordingGitLab

PROJECT = "group/proj"


@pytest.fixture
def fake(fake_gitlab):
    fake_gitlab.add_project(PROJECT, id=1)
    return fake_gitlab


def token_for(fake, user_id, level=None, project=1):
    """A user with its own token (and a role in `project` when `level` is given)."""
    token = f"token-{user_id}"
    fake.add_user(f"user{user_id}", id=user_id, token=token)
    if level is not None:
        fake.add_member(project, user_id, level)
    return token


def call(fake, method, path, token=BOT_TOKEN, **kw):
    return requests.request(method, f"{fake.url}/api/v4{path}", headers={"PRIVATE-TOKEN": token},
                            timeout=5, **kw)


# -- scoped labels ---------------------------------------------------------------------------
def test_free_tier_keeps_every_double_colon_label(fake):
    issue = fake.add_issue(1, "t", labels=["ci::failed"])
    r = call(fake, "PUT", f"/projects/1/issues/{issue['iid']}", json={"add_labels": "ci::passed"})
    assert r.json()["labels"] == ["ci::failed", "ci::passed"]


def test_premium_scoped_label_replaces_its_scope_in_the_same_request(fake):
    fake.add_project("group/prem", id=2, tier="premium")
    issue = fake.add_issue(2, "t", labels=["ci::failed", "team::a::x", "bug"])
    r = call(fake, "PUT", f"/projects/2/issues/{issue['iid']}",
             json={"add_labels": "ci::passed,team::a::y"})
    # The scope is everything before the LAST `::`: team::a::y replaces team::a::x.
    assert r.json()["labels"] == ["bug", "ci::passed", "team::a::y"]
    events = call(fake, "GET", f"/projects/2/issues/{issue['iid']}/resource_label_events").json()
    assert [(e["action"], e["label"]["name"]) for e in events] == [
        ("add", "ci::passed"), ("add", "team::a::y"), ("remove", "ci::failed"),
        ("remove", "team::a::x")]
    assert "group/prem#1:label_removed:ci::failed" in fake.side_effects()


def test_premium_two_labels_of_one_scope_at_once_keep_the_last(fake):
    fake.add_project("group/prem", id=2, tier="premium")
    fake.add_branch(2, "f")
    mr = fake.add_mr(2, "m", "f")
    r = call(fake, "PUT", f"/projects/2/merge_requests/{mr['iid']}",
             json={"labels": "prio::1,x,prio::2"})
    assert r.json()["labels"] == ["x", "prio::2"]


def test_human_relabel_follows_the_same_rules():
    gl = RecordingGitLab()
    gl.add_project("g/p", id=3, tier="premium")
    gl.add_issue(3, 1, labels=["deploy::staging"])
    gl.human_relabel(3, "issue", 1, {"id": 7, "username": "alice"}, add=["deploy::production"])
    assert gl.get_issue(3, 1)["labels"] == ["deploy::production"]
    assert [e["user"]["username"] for e in gl.label_events(3, "issue", 1)] == ["alice", "alice"]


# -- permissions -----------------------------------------------------------------------------
def test_private_project_is_404_for_non_members(fake):
    stranger = token_for(fake, 20)
    r = call(fake, "GET", "/projects/1", token=stranger)
    assert (r.status_code, r.json()) == (404, {"message": "404 Project Not Found"})
    assert call(fake, "GET", "/projects/1/issues", token=stranger).status_code == 404
    fake.op("set_project", project=1, visibility="public")
    assert call(fake, "GET", "/projects/1", token=stranger).status_code == 200


@pytest.mark.parametrize("level,status", [(REPORTER, 403), (DEVELOPER, 201)])
def test_job_retry_needs_developer(fake, level, status):
    token = token_for(fake, 21, level)
    job = fake.add_pipeline(1, jobs=[{"name": "unit"}])["jobs"][0]
    r = call(fake, "POST", f"/projects/1/jobs/{job['id']}/retry", token=token)
    assert r.status_code == status
    if status == 403:
        assert r.json() == {"message": "403 Forbidden"}


def test_pipeline_retry_cancel_and_job_cancel_need_developer(fake):
    reporter = token_for(fake, 22, REPORTER)
    made = fake.add_pipeline(1, status="running", jobs=[{"name": "a", "status": "running"}])
    pid, jid = made["pipeline"]["id"], made["jobs"][0]["id"]
    for path in (f"/pipelines/{pid}/retry", f"/pipelines/{pid}/cancel", f"/jobs/{jid}/cancel"):
        assert call(fake, "POST", f"/projects/1{path}", token=reporter).status_code == 403
    r = call(fake, "POST", f"/projects/1/jobs/{jid}/cancel")
    assert r.status_code == 201 and r.json()["status"] == "canceled"
    assert call(fake, "GET", f"/projects/1/pipelines/{pid}").json()["status"] == "canceled"


def test_issue_updates_need_planner_or_the_author(fake):
    guest = token_for(fake, 23, GUEST)
    planner = token_for(fake, 24, PLANNER)
    issue = fake.add_issue(1, "t")
    assert call(fake, "PUT", "/projects/1/issues/1", token=guest,
                json={"description": "x"}).status_code == 403
    r = call(fake, "PUT", "/projects/1/issues/1", token=planner, json={"add_labels": "triaged"})
    assert r.status_code == 200 and r.json()["labels"] == ["triaged"]
    # A Guest author may edit the description, but labels are metadata: silently dropped.
    own = call(fake, "POST", "/projects/1/issues", token=guest, json={"title": "mine"}).json()
    r = call(fake, "PUT", f"/projects/1/issues/{own['iid']}", token=guest,
             json={"description": "better", "add_labels": "x"})
    assert (r.status_code, r.json()["description"], r.json()["labels"]) == (200, "better", [])
    del issue


def test_mr_labels_need_developer(fake):
    reporter = token_for(fake, 25, REPORTER)
    fake.add_branch(1, "f")
    mr = fake.add_mr(1, "m", "f")
    r = call(fake, "PUT", f"/projects/1/merge_requests/{mr['iid']}", token=reporter,
             json={"add_labels": "x"})
    assert r.status_code == 403


def test_guest_may_comment_and_stranger_may_not(fake):
    guest = token_for(fake, 26, GUEST)
    fake.add_issue(1, "t")
    assert call(fake, "POST", "/projects/1/issues/1/notes", token=guest,
                json={"body": "hi"}).status_code == 201
    assert call(fake, "POST", "/projects/1/issues/1/notes", token=token_for(fake, 27),
                json={"body": "hi"}).status_code == 404


def test_protected_default_branch_needs_maintainer(fake):
    dev = token_for(fake, 28, DEVELOPER)
    body = {"branch": "main", "commit_message": "m",
            "actions": [{"action": "create", "file_path": "x", "content": "1"}]}
    r = call(fake, "POST", "/projects/1/repository/commits", token=dev, json=body)
    assert (r.status_code, r.json()) == (
        403, {"message": "403 Forbidden - You are not allowed to push into this branch"})
    assert call(fake, "POST", "/projects/1/repository/commits", token=dev,
                json={**body, "branch": "dev/x", "start_branch": "main"}).status_code == 201
    assert call(fake, "POST", "/projects/1/repository/commits", json=body).status_code == 201
    branch = call(fake, "GET", "/projects/1/repository/branches/main", token=dev).json()
    assert branch["protected"] is True and branch["can_push"] is False


@pytest.mark.parametrize("path,body", [
    ("/repository/branches", {"branch": "b", "ref": "main"}),
    ("/merge_requests", {"source_branch": "main", "target_branch": "main", "title": "t"}),
    ("/deployments", {"environment": "e", "sha": "a" * 40, "ref": "main", "tag": False,
                      "status": "running"}),
    ("/ci/lint", {"content": "a: {script: x}"}),
])
def test_developer_writes_are_forbidden_to_reporters(fake, path, body):
    reporter = token_for(fake, 29, REPORTER)
    assert call(fake, "POST", f"/projects/1{path}", token=reporter, json=body).status_code == 403


def test_bot_level_is_seedable(fake):
    fake.add_project("g/low", id=5, bot_access=REPORTER)
    job = fake.add_pipeline(5, jobs=[{"name": "a"}])["jobs"][0]
    gl = GitLabAdapter(fake.url, fake.token)
    with pytest.raises(Forbidden):
        gl.retry_job(5, job["id"])
    assert gl.access_level(5, 1) == REPORTER
    fake.add_project("g/none", id=6, bot_access=None)
    with pytest.raises(NotFound):
        gl.get_project(6)


# -- notes and timestamps --------------------------------------------------------------------
def test_note_fields_and_edit_as_author(fake):
    issue = fake.add_issue(1, "t")
    fake.add_user("alice", id=7)
    note = fake.add_note(1, "issue", issue["iid"], "/devops deploy staging", author_id=7)
    assert {"created_at", "updated_at", "system", "author", "noteable_type",
            "noteable_iid"} <= set(note)
    assert note["author"]["username"] == "alice" and note["noteable_type"] == "Issue"
    edited = fake.op("edit_note", project=1, kind="issue", iid=issue["iid"], note_id=note["id"],
                     body="/devops deploy production")
    assert edited["body"] == "/devops deploy production"
    assert edited["updated_at"] > note["updated_at"]
    got = call(fake, "GET", f"/projects/1/issues/1/notes/{note['id']}").json()
    assert got["body"] == "/devops deploy production"


def test_updated_at_moves_and_filters(fake):
    fake.op("set_time", now="2026-01-01T00:00:00Z")
    old = fake.add_issue(1, "old")
    fake.op("advance_time", seconds=3600)
    fresh = fake.add_issue(1, "fresh")
    assert old["updated_at"].startswith("2026-01-01T00:00")
    titles = lambda **q: [i["title"] for i in call(  # noqa: E731
        fake, "GET", "/projects/1/issues", params=q).json()]
    assert titles(updated_after="2026-01-01T00:30:00Z") == ["fresh"]
    assert titles(updated_before="2026-01-01T00:30:00Z") == ["old"]
    fake.op("advance_time", seconds=3600)
    call(fake, "POST", f"/projects/1/issues/{old['iid']}/notes", json={"body": "bump"})
    assert titles(order_by="updated_at") == ["old", "fresh"]
    assert call(fake, "GET", "/projects/1/issues", params={"order_by": "nope"}).status_code == 400
    del fresh


# -- merge requests ------------------------------------------------------------------------
def test_mr_shape_push_moves_sha_and_list_filters(fake):
    fake.add_branch(1, "feature")
    mr = call(fake, "POST", "/projects/1/merge_requests", json={
        "source_branch": "feature", "target_branch": "main", "title": "Draft: x"}).json()
    assert mr["state"] == "opened" and mr["author"]["id"] == 1
    assert mr["detailed_merge_status"] == "draft_status" and mr["draft"] is True
    assert mr["source_project_id"] == mr["target_project_id"] == 1
    pushed = fake.op("push_commit", project=1, branch="feature", files={"a.txt": "1"})
    got = call(fake, "GET", f"/projects/1/merge_requests/{mr['iid']}").json()
    assert got["sha"] == pushed["id"]
    assert call(fake, "GET", "/projects/1/repository/branches/feature").json()["commit"]["id"] \
        == pushed["id"]
    listed = call(fake, "GET", "/projects/1/merge_requests",
                  params={"source_branch": "feature", "state": "opened"}).json()
    assert [m["iid"] for m in listed] == [mr["iid"]]
    closed = call(fake, "PUT", f"/projects/1/merge_requests/{mr['iid']}",
                  json={"state_event": "close", "title": "x", "description": "d"}).json()
    assert (closed["state"], closed["title"], closed["detailed_merge_status"]) == \
        ("closed", "x", "not_open")
    assert call(fake, "GET", "/projects/1/merge_requests", params={"state": "opened"}).json() == []


def test_fork_mr_sha_follows_the_fork(fake):
    fake.add_project("someone/proj", id=9, forked_from=1)
    fake.add_branch(9, "patch")
    mr = fake.add_mr(1, "From a fork", "patch", source_project=9)
    assert (mr["source_project_id"], mr["target_project_id"]) == (9, 1)
    pushed = fake.op("push_commit", project=9, branch="patch", files={"f": "x"})
    got = call(fake, "GET", f"/projects/1/merge_requests/{mr['iid']}").json()
    assert got["sha"] == pushed["id"]


@pytest.mark.parametrize("reset,left", [(True, 1), (False, 0)])
def test_premium_push_resets_approvals(fake, reset, left):
    fake.add_project("g/prem", id=2, tier="premium", reset_approvals_on_push=reset,
                     members={11: DEVELOPER})
    fake.add_branch(2, "f")
    mr = fake.add_mr(2, "m", "f", approvals_required=1)
    fake.approve_mr(2, mr["iid"], 11)
    fake.op("push_commit", project=2, branch="f", files={"x": "1"})
    got = call(fake, "GET", f"/projects/2/merge_requests/{mr['iid']}/approvals").json()
    assert got["approvals_left"] == left
    system = [n["body"] for n in call(fake, "GET", f"/projects/2/merge_requests/{mr['iid']}/notes",
                                      params={"sort": "asc"}).json() if n["system"]]
    assert system[0].startswith("added 1 commit")
    assert any("reset approvals from @user11" in b for b in system) is reset


def test_approve_endpoint(fake):
    dev = token_for(fake, 30, DEVELOPER)
    fake.add_branch(1, "f")
    mr = fake.add_mr(1, "m", "f")
    r = call(fake, "POST", f"/projects/1/merge_requests/{mr['iid']}/approve", token=dev)
    assert r.status_code == 201 and r.json()["approved"] is True
    again = call(fake, "POST", f"/projects/1/merge_requests/{mr['iid']}/approve", token=dev)
    assert again.status_code == 401
    wrong = call(fake, "POST", f"/projects/1/merge_requests/{mr['iid']}/approve",
                 json={"sha": "0" * 40})
    assert wrong.status_code == 409


# -- pipelines and jobs ----------------------------------------------------------------------
def test_pipelines_for_backtests(fake):
    fake.op("set_time", now="2026-03-01T10:00:00Z")
    a = fake.add_pipeline(1, ref="main", status="success")["pipeline"]
    fake.op("advance_time", seconds=600)
    b = fake.add_pipeline(1, ref="dev", status="failed", source="merge_request_event")["pipeline"]
    fake.op("advance_time", seconds=600)
    c = fake.add_pipeline(1, ref="main", status="failed")["pipeline"]
    ids = lambda **q: [p["id"] for p in call(  # noqa: E731
        fake, "GET", "/projects/1/pipelines", params=q).json()]
    assert ids(updated_after="2026-03-01T10:05:00Z") == [c["id"], b["id"]]
    assert ids(updated_before="2026-03-01T10:05:00Z") == [a["id"]]
    assert ids(source="merge_request_event") == [b["id"]]
    assert ids(status="failed", sort="asc") == [b["id"], c["id"]]
    assert ids(order_by="updated_at", sort="asc") == [a["id"], b["id"], c["id"]]
    assert call(fake, "GET", "/projects/1/pipelines", params={"status": "bogus"}).status_code == 400
    listed = call(fake, "GET", "/projects/1/pipelines").json()[0]
    assert set(listed) == {"id", "iid", "project_id", "sha", "ref", "status", "source",
                           "created_at", "updated_at", "web_url"}
    full = call(fake, "GET", f"/projects/1/pipelines/{a['id']}").json()
    assert full["finished_at"] and full["web_url"].endswith(f"/-/pipelines/{a['id']}")


def test_project_jobs_scopes_fields_and_retried(fake):
    made = fake.add_pipeline(1, jobs=[
        {"name": "build", "stage": "build", "status": "success", "duration": 12.5},
        {"name": "unit", "status": "failed", "failure_reason": "runner_system_failure"},
        {"name": "lint", "status": "canceled"}])
    unit = made["jobs"][1]
    retried = call(fake, "POST", f"/projects/1/jobs/{unit['id']}/retry").json()
    jobs = call(fake, "GET", "/projects/1/jobs",
                params=[("scope[]", "failed"), ("scope[]", "success")]).json()
    assert [j["name"] for j in jobs] == ["unit", "build"]  # newest first
    failed = jobs[0]
    assert failed["failure_reason"] == "runner_system_failure" and failed["allow_failure"] is False
    assert failed["pipeline"] == {**failed["pipeline"], "id": made["pipeline"]["id"],
                                  "project_id": 1}
    assert {"created_at", "started_at", "finished_at", "duration", "ref", "stage", "web_url",
            "user"} <= set(failed)
    assert jobs[1]["duration"] == 12.5
    assert call(fake, "GET", "/projects/1/jobs", params={"scope[]": "bogus"}).status_code == 400
    pid = made["pipeline"]["id"]
    plain = call(fake, "GET", f"/projects/1/pipelines/{pid}/jobs").json()
    every = call(fake, "GET", f"/projects/1/pipelines/{pid}/jobs",
                 params={"include_retried": "true"}).json()
    assert unit["id"] not in [j["id"] for j in plain] and retried["id"] in [j["id"] for j in plain]
    assert unit["id"] in [j["id"] for j in every]


# -- repository -------------------------------------------------------------------------------
def test_files_raw_tree_and_branch(fake):
    fake.add_project("g/repo", id=4, files={".gitlab-ci.yml": "test: {script: make}\n",
                                            "ci/build.yml": "build: {script: b}\n",
                                            "README.md": "hi\n"})
    first = fake.op("push_commit", project=4, branch="main", files={"README.md": "hello\n"})
    enc = quote(".gitlab-ci.yml", safe="")
    f = call(fake, "GET", f"/projects/4/repository/files/{enc}", params={"ref": "main"}).json()
    assert base64.b64decode(f["content"]) == b"test: {script: make}\n"
    assert (f["encoding"], f["file_path"], f["size"], f["ref"]) == \
        ("base64", ".gitlab-ci.yml", 21, "main")
    assert f["last_commit_id"] != first["id"] and len(f["blob_id"]) == 40
    readme = call(fake, "GET", "/projects/4/repository/files/README.md", params={"ref": "main"})
    assert readme.json()["last_commit_id"] == first["id"]
    raw = call(fake, "GET", f"/projects/4/repository/files/{quote('ci/build.yml', safe='')}/raw",
               params={"ref": "main"})
    assert raw.text == "build: {script: b}\n"
    assert raw.headers["Content-Type"].startswith("text/plain")
    assert call(fake, "GET", "/projects/4/repository/files/nope", params={"ref": "main"}).json() \
        == {"message": "404 File Not Found"}
    assert call(fake, "GET", f"/projects/4/repository/files/{enc}").status_code == 400
    top = call(fake, "GET", "/projects/4/repository/tree").json()
    assert [(e["name"], e["type"]) for e in top] == [("ci", "tree"), (".gitlab-ci.yml", "blob"),
                                                     ("README.md", "blob")]
    deep = call(fake, "GET", "/projects/4/repository/tree",
                params={"recursive": "true", "path": "ci"}).json()
    assert [e["path"] for e in deep] == ["ci/build.yml"]
    r = call(fake, "GET", "/projects/4/repository/tree", params={"per_page": 1, "page": 2})
    assert len(r.json()) == 1 and r.headers["X-Total"] == "3"
    assert call(fake, "GET", "/projects/4/repository/branches/main").json()["commit"]["id"] == \
        first["id"]


def test_guest_cannot_read_private_code(fake):
    guest = token_for(fake, 31, GUEST)
    assert call(fake, "GET", "/projects/1/repository/tree", token=guest).status_code == 403


# -- CI lint ----------------------------------------------------------------------------------
def lint_call(fake, content, **kw):
    return call(fake, "POST", "/projects/1/ci/lint", json={"content": content, **kw}).json()


def test_lint_valid_with_local_include_and_extends(fake):
    fake.add_project("g/ci", id=8, files={"ci/base.yml": ".base:\n  retry: 2\n  script: [make]\n"})
    content = ("include:\n  - local: /ci/base.yml\nstages: [build]\n"
               "build:\n  extends: .base\n  stage: build\n  timeout: 1h 30m\n")
    r = call(fake, "POST", "/projects/8/ci/lint", json={"content": content,
                                                        "include_jobs": True}).json()
    assert r["valid"] is True and r["errors"] == [] and r["warnings"] == []
    assert r["includes"][0]["type"] == "local" and r["includes"][0]["location"] == "ci/base.yml"
    assert r["merged_yaml"].startswith("---\n") and ".base" in r["merged_yaml"]
    assert r["jobs"][0]["name"] == "build" and r["jobs"][0]["script"] == ["make"]


@pytest.mark.parametrize("content,error", [
    ("build:\n  script: x\n  retry: 3\n", "retry config must be less than or equal to 2"),
    ("build:\n  script: x\n  retry: {max: 5}\n", "retry max must be less than or equal to 2"),
    ("build:\n  script: x\n  retry: {when: [nope, script_failure]}\n",
     "retry when contains unknown values: nope"),
    ("build:\n  script: x\n  retry: {when: nope}\n", "retry when is not included in the list"),
    ("build:\n  script: x\n  retry: {exit_codes: [a]}\n",
     "retry exit codes should be an array of integers or an integer"),
    ("build:\n  script: x\n  timeout: forever\n", "jobs:build:timeout config should be a duration"),
    ("build:\n  script: x\n  timeout: 3600\n", "jobs:build:timeout config should be a duration"),
    ("build:\n  stage: test\n", "jobs build config should implement the script:, run:, or "
                                "trigger: keyword"),
    ("build:\n  script: x\n  scriptt: y\n", "jobs:build config contains unknown keys: scriptt"),
    ("build:\n  script: x\n  extends: .nope\n", "build: unknown keys in `extends` (.nope)"),
    ("build:\n  script: x\n  stage: deploy\nstages: [build]\n",
     "build job: chosen stage does not exist; available stages are .pre, build, .post"),
    ("include: ci/missing.yml\nbuild: {script: x}\n",
     "Local file `ci/missing.yml` does not exist!"),
    (".hidden:\n  script: x\n", "jobs config should contain at least one visible job"),
    ("- just\n- a list\n", "Invalid configuration format"),
    ("", "Please provide content of .gitlab-ci.yml"),
])
def test_lint_errors_worded_like_gitlab(fake, content, error):
    r = lint_call(fake, content)
    assert r["valid"] is False
    assert error in r["errors"], r["errors"]


def test_lint_yaml_syntax_error_and_missing_content(fake):
    r = lint_call(fake, "build:\n  script: [x\n")
    assert r["valid"] is False and r["errors"][0].startswith("(<unknown>): ")
    assert "line" in r["errors"][0] and r["merged_yaml"] is None
    missing = call(fake, "POST", "/projects/1/ci/lint", json={})
    assert (missing.status_code, missing.json()) == (400, {"error": "content is missing"})


def test_lint_dry_run_reads_includes_from_the_ref(fake):
    fake.add_project("g/ci", id=8)
    fake.add_branch(8, "feature", files={"ci/x.yml": "x: {script: a}\n"})
    content = "include: ci/x.yml\n"
    assert call(fake, "POST", "/projects/8/ci/lint", json={"content": content}).json()["valid"] \
        is False
    assert call(fake, "POST", "/projects/8/ci/lint",
                json={"content": content, "dry_run": True, "ref": "feature"}).json()["valid"]


@pytest.mark.parametrize("text,seconds", [
    ("1h 30m", 5400), ("90 minutes", 5400), ("3 hours and 10 seconds", 10810), ("1:30:00", 5400),
    ("2h20min", 8400), ("3600", 3600), ("1 week", 604800), ("soon", None), (3600, None),
])
def test_timeout_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_lint_unit_reference_tags():
    p = {"web_url": "http://x/g/p", "path_with_namespace": "g/p"}
    ok = lint(".s:\n  script: [a, b]\nj:\n  script:\n    - !reference [.s, script]\n    - c\n",
              {}, p, "0" * 40, include_jobs=True)
    assert ok["valid"] and ok["jobs"][0]["script"] == ["a", "b", "c"]
    bad = lint("j:\n  script: !reference [.none, script]\n", {}, p, "0" * 40)
    assert bad["errors"] == ['!reference [".none", "script"] could not be found']


# -- snippets and users -----------------------------------------------------------------------
def test_snippets(fake):
    r = call(fake, "POST", "/projects/1/snippets", json={
        "title": "ci log", "visibility": "private",
        "files": [{"file_path": "job.log", "content": "boom\n"}]})
    assert r.status_code == 201
    s = r.json()
    assert s["web_url"].endswith(f"/group/proj/-/snippets/{s['id']}")
    assert s["raw_url"] == s["web_url"] + "/raw" and s["files"][0]["path"] == "job.log"
    assert call(fake, "GET", f"/projects/1/snippets/{s['id']}/raw").text == "boom\n"
    assert call(fake, "POST", "/projects/1/snippets",
                json={"title": "t", "visibility": "private"}).status_code == 400
    guest = token_for(fake, 32, GUEST)
    assert call(fake, "POST", "/projects/1/snippets", token=guest, json={
        "title": "t", "visibility": "private", "content": "x"}).status_code == 403


def test_users(fake):
    fake.add_user("Alice", id=7)
    assert call(fake, "GET", "/users/7").json()["username"] == "Alice"
    found = call(fake, "GET", "/users", params={"username": "alice"}).json()
    assert [u["id"] for u in found] == [7]
    assert call(fake, "GET", "/users/999").json() == {"message": "404 User Not Found"}


# -- the recording fake answers as the HTTP one ------------------------------------------------
def _both(fake):
    """The same seed in the HTTP fake and in a recording fake."""
    rec = RecordingGitLab()
    fake.add_project("acme/shop", id=15, tier="premium", members={7: DEVELOPER})
    rec.add_project("acme/shop", id=15, tier="premium", members={7: DEVELOPER})
    http = GitLabAdapter(fake.url, fake.token)
    return http, rec


@pytest.mark.parametrize("call_it", [
    lambda gl: gl.get_job(15, 424242),
    lambda gl: gl.get_issue(15, 99),
    lambda gl: gl.get_mr("acme/shop", 99),
    lambda gl: gl.get_pipeline("acme/missing", 1),
    lambda gl: gl.create_mr(15, "nope", "main", "t"),
    lambda gl: gl.update_note(15, "issue", 1, 999, "x"),
    lambda gl: gl.create_commit(15, "main", "m", [{"action": "delete", "file_path": "nope"}]),
])
def test_recording_raises_what_http_raises(fake, call_it):
    http, rec = _both(fake)
    fake.add_issue(15, "t")
    rec.add_issue(15, 1)
    errors = []
    for gl in (http, rec):
        with pytest.raises(GitLabError) as e:
            call_it(gl)
        errors.append((type(e.value), e.value.status))
    assert errors[0] == errors[1]


def test_recording_and_http_agree_on_labels_and_closing_issues(fake):
    http, rec = _both(fake)
    for gl, seed in ((http, fake), (rec, None)):
        if seed is not None:
            seed.add_issue(15, "a", labels=["ci::failed"])
            seed.add_branch(15, "fix")
            seed.add_mr(15, "m", "fix", description="Implements #1, fixes #2 and #1")
        else:
            gl.add_issue(15, 1, "a", labels=["ci::failed"])
            gl.state.add_branch(15, "fix")
            gl.add_mr(15, 1, "m", "Implements #1, fixes #2 and #1", source_branch="fix")
    results = [(gl.add_labels(15, "issue", 1, ["ci::passed"])["labels"],
                [i["iid"] for i in gl.mr_closes_issues(15, 1)]) for gl in (http, rec)]
    assert results[0] == results[1] == (["ci::passed"], [1])
