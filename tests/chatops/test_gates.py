"""Gates as plain functions: freezes (GitLab cron + time zone), deny windows, access, force."""

import datetime as dt

import pytest

from tasks.config.agent import DenyWindow, EnvAccess
from tasks.deploy.gates import check_access, deny_window_gate, evaluate, freeze_gate
from tests.support.recording_gitlab import RecordingGitLab

UTC = dt.UTC
WEEKEND_FREEZE = [{"freeze_start": "0 23 * * 5", "freeze_end": "0 7 * * 1", "cron_timezone": "UTC"}]


@pytest.mark.parametrize("when,frozen", [
    (dt.datetime(2026, 11, 27, 22, 59, tzinfo=UTC), False),  # Friday, a minute before
    (dt.datetime(2026, 11, 27, 23, 0, tzinfo=UTC), True),
    (dt.datetime(2026, 11, 28, 12, 0, tzinfo=UTC), True),    # Saturday
    (dt.datetime(2026, 11, 30, 6, 59, tzinfo=UTC), True),    # Monday morning
    (dt.datetime(2026, 11, 30, 7, 0, tzinfo=UTC), False),
    (dt.datetime(2026, 12, 2, 12, 0, tzinfo=UTC), False),    # Wednesday
])
def test_freeze_periods(when, frozen):
    gate = freeze_gate(WEEKEND_FREEZE, when)
    assert gate.passed is not frozen
    if frozen:
        assert "0 23 * * 5" in gate.detail and "Mon 2026-11-30 07:00" in gate.detail


def test_freeze_respects_its_time_zone():
    period = [{"freeze_start": "0 9 * * *", "freeze_end": "0 17 * * *", "cron_timezone": "Asia/Tokyo"}]
    # 10:00 in Tokyo is 01:00 UTC
    assert not freeze_gate(period, dt.datetime(2026, 12, 2, 1, 0, tzinfo=UTC)).passed
    assert freeze_gate(period, dt.datetime(2026, 12, 2, 10, 0, tzinfo=UTC)).passed


def test_malformed_freeze_period_refuses_with_a_reason():
    gate = freeze_gate([{"freeze_start": "not cron", "freeze_end": "0 7 * * 1"}],
                       dt.datetime(2026, 12, 2, tzinfo=UTC))
    assert not gate.passed and "could not be read" in gate.detail


@pytest.mark.parametrize("when,inside", [
    (dt.datetime(2026, 11, 27, 13, 59, tzinfo=UTC), False),  # Fri 14:59 Berlin
    (dt.datetime(2026, 11, 27, 14, 0, tzinfo=UTC), True),    # Fri 15:00 Berlin
    (dt.datetime(2026, 11, 29, 20, 0, tzinfo=UTC), True),    # Sunday
    (dt.datetime(2026, 11, 30, 7, 0, tzinfo=UTC), False),    # Mon 08:00 Berlin
    (dt.datetime(2026, 12, 2, 10, 0, tzinfo=UTC), False),
])
def test_deny_window_wraps_the_week(when, inside):
    window = DenyWindow(start="fri 15:00", end="mon 08:00", timezone="Europe/Berlin")
    assert deny_window_gate((window,), when).passed is not inside


def test_deny_window_validation():
    with pytest.raises(ValueError):
        DenyWindow(start="friday 3pm", end="mon 08:00")
    with pytest.raises(ValueError):
        DenyWindow(start="fri 15:00", end="mon 08:00", timezone="Mars/Olympus")


def test_access_names_levels():
    gate = check_access(30, 40, "production")
    assert not gate.passed and "production needs Maintainer" in gate.detail and "Developer" in gate.detail
    assert "no access" in check_access(0, 30, "staging").detail


def _gl():
    gl = RecordingGitLab()
    gl.add_project("acme/shop", id=15)
    for uid, name in ((7, "dev"), (8, "bob"), (9, "carol")):
        gl.state.add_user(name, id=uid)
    gl.add_member(15, 7, 30)
    gl.add_member(15, 8, 40)
    gl.add_member(15, 9, 40)
    return gl


class History:
    """What the deploy store knows, as the gates ask it (a recording fake of KubeDeployer's)."""

    def __init__(self, shas=None, last=None):
        self.shas, self.last = shas or {}, last

    def succeeded_shas(self, project, env, limit=50):
        return list(self.shas.get(env, []))

    def last_succeeded(self, project, env):
        return self.last


def _pipeline(gl, sha="a" * 40, status="success", jobs=None, ref="main"):
    return gl.add_pipeline(15, ref=ref, sha=sha, status=status,
                           jobs=jobs or [{"name": "build", "status": "success"}])["pipeline"]


def test_force_is_for_maintainers_with_a_reason(redis_client):
    gl = _gl()
    _pipeline(gl)
    access = EnvAccess(min_access="developer", respect_freeze_periods=True)
    kwargs = dict(project=15, env="staging", ref="main", username="u")
    d = evaluate(gl, redis_client, access, user_id=7, force_reason="because", **kwargs)
    assert not d.allowed and d.gates[-1].name == "force"
    d = evaluate(gl, redis_client, access, user_id=8, force_reason="x", **kwargs)
    assert not d.allowed and "written reason" in d.gates[-1].detail
    d = evaluate(gl, redis_client, access, user_id=8, force_reason="hotfix INC-7", **kwargs)
    assert d.allowed and d.gates[-1].detail.endswith("hotfix INC-7")
    assert d.checked.sha == "a" * 40  # even a forced deploy ships what was read, once


def test_the_sha_checked_is_the_sha_decided(redis_client):
    gl = _gl()
    pipe = _pipeline(gl, sha="b" * 40)
    d = evaluate(gl, redis_client, EnvAccess(require_pipeline_success=True), project=15,
                 env="staging", ref="main", user_id=7, username="dev", force_reason=None)
    assert d.allowed and (d.checked.sha, d.checked.pipeline) == ("b" * 40, pipe["id"])
    assert [g.name for g in d.gates] == ["access", "lock", "pipeline"]


def test_every_job_of_the_pipeline_must_pass(redis_client):
    gl = _gl()
    _pipeline(gl, status="success", jobs=[{"name": "build", "status": "success"},
                                          {"name": "e2e", "status": "failed"},
                                          {"name": "lint", "status": "failed", "allow_failure": True}])
    d = evaluate(gl, redis_client, EnvAccess(require_pipeline_success=True), project=15,
                 env="staging", ref="main", user_id=7, username="dev", force_reason=None)
    refusing = d.refusing()
    assert not d.allowed and refusing.name == "pipeline" and "`e2e` (failed)" in refusing.detail
    assert "lint" not in refusing.detail


def test_security_scans_must_have_run_and_passed(redis_client):
    gl = _gl()
    access = EnvAccess(require_security_scans=True)
    args = dict(project=15, env="production", ref="main", user_id=7, username="dev", force_reason=None)
    _pipeline(gl, sha="c" * 40, jobs=[{"name": "build", "status": "success"}])
    assert "no security scan ran" in evaluate(gl, redis_client, access, **args).refusing().detail
    _pipeline(gl, sha="d" * 40, jobs=[{"name": "semgrep-sast", "stage": "test", "status": "failed"},
                                      {"name": "secret_detection", "stage": "test", "status": "success"}])
    assert "`semgrep-sast` (failed)" in evaluate(gl, redis_client, access, **args).refusing().detail
    _pipeline(gl, sha="e" * 40, jobs=[{"name": "trivy", "stage": "security", "status": "success"}])
    assert evaluate(gl, redis_client, access, **args).allowed


def test_approval_covers_only_its_own_branch_project_and_head(redis_client):
    from tasks.gitlab.facts import noteable_facts

    gl = _gl()
    gl.state.add_branch(15, "feature", "main")
    gl.add_mr(15, 7, source_branch="feature")
    access = EnvAccess(require_mr_approval=True)
    args = dict(project=15, env="production", user_id=8, username="bob", force_reason=None)
    head = gl.get_mr(15, 7)["sha"]
    _pipeline(gl, sha=head, ref="feature")
    gl.state.approve_mr(15, 7, 9)
    _pipeline(gl, sha="f" * 40, ref="main")
    facts = noteable_facts(gl, 15, "mr", 7)
    other = evaluate(gl, redis_client, access, ref="main", noteable=facts, **args)
    assert "is not !7's source branch" in other.refusing().detail  # another ref: no bypass
    ok = evaluate(gl, redis_client, access, ref="feature", noteable=facts, **args)
    assert ok.allowed and ok.checked.sha == head
    gl.state.push_commit(15, "feature", files={"x.txt": "1"}, message="more work")  # after the pipeline
    stale = evaluate(gl, redis_client, access, ref="feature",
                     noteable=noteable_facts(gl, 15, "mr", 7), **args)
    assert not stale.allowed and stale.refusing().name in ("approval",)


def test_issue_approvals_are_notes_by_someone_else_allowed_to_deploy(redis_client):
    from tasks.gitlab.facts import noteable_facts

    gl = _gl()
    gl.add_issue(15, 42, "ship")
    _pipeline(gl)
    access = EnvAccess(min_access="maintainer", require_mr_approval=True)
    args = dict(project=15, env="production", ref="main", user_id=8, username="bob",
                force_reason=None)
    gl.add_note(15, "issue", 42, "/devops approve production", author={"id": 8})  # bob himself
    gl.add_note(15, "issue", 42, "/devops approve production", author={"id": 7})  # a Developer
    gl.add_note(15, "issue", 42, "> /devops approve production", author={"id": 9})  # quoted
    d = evaluate(gl, redis_client, access, noteable=noteable_facts(gl, 15, "issue", 42), **args)
    assert not d.allowed and "0 so far" in d.refusing().detail
    gl.add_note(15, "issue", 42, "/devops approve production", author={"id": 9})
    d = evaluate(gl, redis_client, access, noteable=noteable_facts(gl, 15, "issue", 42), **args)
    assert d.allowed and d.gates[-1].name == "approval"


def test_staging_first_rollback_plan_monitoring_and_small_changes(redis_client):
    gl = _gl()
    pipe = _pipeline(gl, sha="1" * 40)
    access = EnvAccess(min_access="developer", requires=("staging",), require_rollback_plan=True,
                       require_monitoring=True, max_commits=3)
    args = dict(project=15, env="production", ref="main", user_id=7, username="dev",
                force_reason=None)
    d = evaluate(gl, redis_client, access, history=History(), **args)
    assert d.refusing().name == "staging_first"
    history = History(shas={"staging": ["1" * 40]})
    d = evaluate(gl, redis_client, access, history=history, **args)
    assert d.refusing().name == "rollback_plan" and "--force" in d.refusing().detail

    class Env:
        health_checks, prometheus = [object()], []

    history.last = {"sha": "1" * 40, "image": "app:1"}
    d = evaluate(gl, redis_client, access, history=history, env_config=None, **args)
    assert d.refusing().name == "monitoring"
    d = evaluate(gl, redis_client, access, history=history, env_config=Env(), **args)
    assert d.allowed and d.gates[-1].name == "small_changes"
    assert pipe["sha"] == d.checked.sha


def test_checklist_runs_every_gate(redis_client):
    gl = _gl()
    _pipeline(gl, status="failed", jobs=[{"name": "unit", "status": "failed"}])
    access = EnvAccess(min_access="maintainer", require_pipeline_success=True,
                       require_security_scans=True, require_monitoring=True)
    d = evaluate(gl, redis_client, access, project=15, env="production", ref="main", user_id=7,
                 username="dev", force_reason=None, checklist=True)
    assert [(g.name, g.passed) for g in d.gates] == [
        ("access", False), ("lock", True), ("pipeline", False), ("security", False),
        ("monitoring", False)]
    assert d.checklist().count("❌") == 4 and not d.allowed


def test_rollback_needs_only_access_and_the_lock(redis_client):
    gl = _gl()
    access = EnvAccess(min_access="developer", require_pipeline_success=True,
                       respect_freeze_periods=True)
    d = evaluate(gl, redis_client, access, project=15, env="staging", ref=None, user_id=7,
                 username="dev", force_reason=None, action="rollback")
    assert d.allowed and [g.name for g in d.gates] == ["access", "lock"]
