"""The adapter's new calls against the fake GitLab over real HTTP (python-gitlab underneath):
files, CI lint, merge request search and update, and the fake's `last_commit_id` guard."""

from __future__ import annotations

import pytest

from tasks.gitlab.client import GitLabAdapter, GitLabError, NotFound
from tests.support.fake_gitlab import DEVELOPER

CI = "build:\n  script: make   # é\n"


@pytest.fixture
def gl(fake_gitlab):
    fake_gitlab.add_project("group/proj", id=1, files={".gitlab-ci.yml": CI,
                                                       "ci/jobs.yml": "x: {script: y}\n"})
    adapter = GitLabAdapter(fake_gitlab.url, fake_gitlab.token, timeout=5, per_page=2)
    yield adapter
    adapter.close()


def test_get_file_decodes_content(gl):
    f = gl.get_file(1, ".gitlab-ci.yml", "main")
    assert f["content"] == CI and f["encoding"] == "text" and f["last_commit_id"]
    assert gl.get_file("group/proj", "ci/jobs.yml", "main")["file_path"] == "ci/jobs.yml"
    with pytest.raises(NotFound):
        gl.get_file(1, "missing.yml", "main")


def test_ci_lint_answers_valid_errors_and_merged_yaml(gl):
    ok = gl.ci_lint(1, "include: ci/jobs.yml\nbuild:\n  script: make\n")
    assert ok["valid"] is True and "x:" in ok["merged_yaml"]
    bad = gl.ci_lint(1, "build:\n  script: make\n  retry: {when: [network]}\n")
    assert bad["valid"] is False and bad["errors"] == ["retry when contains unknown values: network"]
    assert gl.ci_lint(1, CI, ref="main", dry_run=True)["valid"] is True


def test_find_and_update_merge_requests(gl, fake_gitlab):
    fake_gitlab.add_branch(1, "fix-a")
    fake_gitlab.add_branch(1, "fix-b")
    a = gl.create_mr(1, "fix-a", "main", "A", "<!-- devops-agent:pipeline-fix:retry:abc -->",
                     ["ci-config"])
    gl.create_mr(1, "fix-b", "main", "B", "other")
    assert [m["iid"] for m in gl.find_mrs(1, source_branch="fix-a")] == [a["iid"]]
    assert [m["iid"] for m in gl.find_mrs(1, search="pipeline-fix:retry:abc", state="all",
                                          labels=["ci-config"])] == [a["iid"]]
    gl.update_mr(1, a["iid"], state_event="close", description="closed")
    assert gl.find_mrs(1, source_branch="fix-a") == []
    [closed] = gl.find_mrs(1, source_branch="fix-a", state="closed")
    assert closed["description"] == "closed" and closed["closed_at"]


def test_a_commit_on_a_stale_read_is_refused(gl, fake_gitlab):
    seen = gl.get_file(1, ".gitlab-ci.yml", "main")["last_commit_id"]
    fake_gitlab.push_commit(1, "main", {".gitlab-ci.yml": CI + "test:\n  script: t\n"})
    with pytest.raises(GitLabError) as err:
        gl.create_commit(1, "bot/fix", "m", [{"action": "update", "file_path": ".gitlab-ci.yml",
                                              "content": "x", "last_commit_id": seen}],
                         start_branch="main")
    assert err.value.status == 400 and "changed since you started editing" in str(err.value)
    fresh = gl.get_file(1, ".gitlab-ci.yml", "main")["last_commit_id"]
    gl.create_commit(1, "bot/fix", "m", [{"action": "update", "file_path": ".gitlab-ci.yml",
                                          "content": "x", "last_commit_id": fresh}],
                     start_branch="main")
    assert gl.get_file(1, ".gitlab-ci.yml", "bot/fix")["content"] == "x"


def test_project_ci_settings_are_shown_to_maintainers_only(gl, fake_gitlab):
    assert gl.get_project(1)["build_timeout"] == 3600
    fake_gitlab.add_project("group/dev", id=2, bot_access=DEVELOPER)
    assert "build_timeout" not in gl.get_project(2)


def test_dry_run_sends_no_mr_update(fake_gitlab):
    fake_gitlab.add_project("group/proj", id=1)
    dry = GitLabAdapter(fake_gitlab.url, fake_gitlab.token, dry_run=True)
    assert dry.update_mr(1, 1, description="x")["dry_run"] is True
    assert fake_gitlab.write_calls() == []
