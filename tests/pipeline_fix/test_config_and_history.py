"""The `pipeline_fixes:` configuration section and the bounded failure history."""

from __future__ import annotations

import pytest

from tasks.ci.pipeline_fix.detect import MAX_FAILURES, FixHistory, kind_of
from tasks.config.agent import load_config
from tasks.config.settings import ConfigError


def test_defaults_and_a_valid_section(tmp_path):
    assert load_config(None).pipeline_fixes.threshold == 3
    path = tmp_path / "agent.yaml"
    path.write_text("pipeline_fixes:\n  threshold: 5\n  window_days: 2\n  kinds: [retry]\n"
                    "  timeout_step: 15m\n  timeout_max: 2h\n")
    cfg = load_config(path).pipeline_fixes
    assert (cfg.threshold, cfg.window_seconds, cfg.kinds) == (5, 2 * 86400, ("retry",))


@pytest.mark.parametrize("body,message", [
    ("  threshold: 1\n", "pipeline_fixes.threshold"),
    ("  window_days: 90\n", "pipeline_fixes.window_days"),
    ("  kinds: [retry, rebuild]\n", "unknown kind(s) rebuild"),
    ("  categories: [test_failure]\n", "code failures never are"),
    ("  timeout_step: soon\n", "expected a duration"),
    ("  timeout_max: 40 days\n", "under one month"),
    ("  timeout_step: 4h\n  timeout_max: 3h\n", "timeout_step is larger than timeout_max"),
    ("  retry_max: 3\n", "pipeline_fixes.retry_max"),
    ("  surprise: 1\n", "pipeline_fixes.surprise"),
])
def test_invalid_sections_name_the_field_and_line(tmp_path, body, message):
    path = tmp_path / "agent.yaml"
    path.write_text("chatops:\n  prefix: /devops\npipeline_fixes:\n" + body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and f"{path}:" in str(err.value)


def test_failure_reasons_map_to_changes():
    assert kind_of("runner_system_failure") == kind_of("stuck_pending_no_matching_runners") \
        == "retry"
    assert kind_of("job_execution_timeout") == kind_of("server_timeout_running") == "timeout"
    assert kind_of("script_failure") is None and kind_of(None) is None
    assert kind_of("runner_interrupted") is None  # not a documented retry:when value


def test_history_is_windowed_capped_and_expires(redis_client):
    now = [1_000_000.0]
    history = FixHistory(redis_client, clock=lambda: now[0])
    assert history.record(1, "build", "api_failure", 10, {}, 3600) == (True, 1)
    assert history.record(1, "build", "api_failure", 10, {}, 3600) == (False, 1)  # same job
    now[0] += 3601
    assert history.record(1, "build", "api_failure", 11, {}, 3600) == (True, 1)  # 10 aged out
    for i in range(MAX_FAILURES + 20):
        history.record(1, "build", "api_failure", 100 + i, {"n": i}, 3600)
    [at] = redis_client.keys("da:pfix:*:at")
    [info] = redis_client.keys("da:pfix:*:info")
    assert all(0 < redis_client.ttl(k) <= 3600 + 86400 for k in (at, info))
    assert redis_client.zcard(at) == redis_client.hlen(info) == MAX_FAILURES
    found = history.failures(1, "build", "api_failure", 3600)
    assert len(found) == MAX_FAILURES and found[-1]["n"] == MAX_FAILURES + 19
