"""Gates as plain functions: freezes (GitLab cron + time zone), deny windows, access, force."""

import datetime as dt

import pytest

from tasks.chatops.gates import check_access, deny_window_gate, evaluate, freeze_gate
from tasks.config import DenyWindow, EnvAccess
from tests.support.recording_gitlab import RecordingGitLab

UTC = dt.timezone.utc
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
    return gl


def test_force_is_for_maintainers_with_a_reason(redis_client):
    gl = _gl()
    access = EnvAccess(min_access="developer", respect_freeze_periods=True)
    kwargs = dict(project=15, env="staging", ref="main", username="u", mr_iid=None)
    gl.add_member(15, 7, 30)
    gl.add_member(15, 8, 40)
    ok, gates = evaluate(gl, redis_client, access, user_id=7, force_reason="because", **kwargs)
    assert not ok and gates[-1].name == "force"
    ok, gates = evaluate(gl, redis_client, access, user_id=8, force_reason="x", **kwargs)
    assert not ok and "written reason" in gates[-1].detail
    ok, gates = evaluate(gl, redis_client, access, user_id=8, force_reason="hotfix INC-7", **kwargs)
    assert ok and gates[-1].detail.endswith("hotfix INC-7")
