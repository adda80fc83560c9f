"""GitLab's job `failure_reason` values, and how we normalise what a webhook sends.

From gitlabhq `app/models/concerns/enums/ci/commit_status.rb` (CE + EE). GitLab adds values
over time, so an unknown string from a webhook is treated as `unknown_failure` rather than
rejected; a rules *file* naming an unknown value is a typo and is reported by validation.
"""

from __future__ import annotations

_FAILURE_REASON_NAMES = """
    unknown_failure script_failure api_failure stuck_or_timeout_failure runner_system_failure
    missing_dependency_failure runner_unsupported stale_schedule job_execution_timeout
    archived_failure unmet_prerequisites scheduler_failure data_integrity_failure
    forward_deployment_failure user_blocked project_deleted ci_quota_exceeded
    pipeline_loop_detected no_matching_runner trace_size_exceeded builds_disabled
    environment_creation_failure deployment_rejected failed_outdated_deployment_job
    job_execution_server_timeout stuck_pending_with_matching_runners
    stuck_pending_no_matching_runners no_updates_running no_updates_canceling
    server_timeout_running server_timeout_canceling runner_configuration_error
    runner_external_dependency_failure runner_interrupted protected_environment_failure
    insufficient_bridge_permissions downstream_bridge_project_not_found invalid_bridge_trigger
    upstream_bridge_project_not_found insufficient_upstream_permissions
    bridge_pipeline_is_child_pipeline downstream_pipeline_creation_failed
    secrets_provider_not_found reached_max_descendant_pipelines_depth
    reached_max_pipeline_hierarchy_size reached_downstream_pipeline_trigger_rate_limit
    downstream_project_trigger_resolved_to_empty ip_restriction_failure
"""
FAILURE_REASONS = frozenset(_FAILURE_REASON_NAMES.split())

# A rule naming the umbrella value also catches the finer-grained values newer GitLab sends.
ALIASES: dict[str, frozenset[str]] = {
    "stuck_or_timeout_failure": frozenset(
        {
            "stuck_pending_with_matching_runners",
            "stuck_pending_no_matching_runners",
            "no_updates_running",
            "no_updates_canceling",
        }
    ),
    "job_execution_timeout": frozenset({"server_timeout_running", "server_timeout_canceling"}),
}


def normalise(reason: str | None) -> str | None:
    """The reason as a rule sees it: None stays None (not known), unknown strings become
    unknown_failure."""
    if reason is None:
        return None
    reason = reason.strip().lower()
    return reason if reason in FAILURE_REASONS else "unknown_failure"


def expand(rule_values: list[str]) -> frozenset[str]:
    """The set of webhook values a rule's `failure_reason` list accepts, aliases included."""
    out: set[str] = set()
    for value in rule_values:
        out.add(value)
        out |= ALIASES.get(value, frozenset())
    return frozenset(out)


# Failure reasons that are GitLab's or the runner's, not the script's: they decide the
# category before any log line is read (the log may be empty or cut off).
_RUNNER, _TIMEOUT = "runner_system_failure", "job_timeout"
DECISIVE: dict[str, str] = {
    "runner_system_failure": _RUNNER,
    "runner_unsupported": _RUNNER,
    "scheduler_failure": _RUNNER,
    "data_integrity_failure": _RUNNER,
    "api_failure": _RUNNER,
    "runner_configuration_error": _RUNNER,
    "runner_external_dependency_failure": _RUNNER,
    "runner_interrupted": _RUNNER,
    "no_matching_runner": _RUNNER,
    "stuck_or_timeout_failure": _TIMEOUT,
    "stuck_pending_with_matching_runners": _TIMEOUT,
    "stuck_pending_no_matching_runners": _TIMEOUT,
    "no_updates_running": _TIMEOUT,
    "no_updates_canceling": _TIMEOUT,
    "job_execution_timeout": _TIMEOUT,
    "job_execution_server_timeout": _TIMEOUT,
    "server_timeout_running": _TIMEOUT,
    "server_timeout_canceling": _TIMEOUT,
    "missing_dependency_failure": "dependency_resolution",
}

# What each decisive reason means, for a verdict no rule of the table refines.
EXPLAIN: dict[str, str] = {
    "runner_system_failure": "The runner failed, not the job's script (system failure).",
    "runner_unsupported": "The runner is too old for a feature this job uses.",
    "scheduler_failure": "GitLab could not schedule the job on a runner.",
    "data_integrity_failure": "GitLab found the job's data inconsistent and stopped it.",
    "api_failure": "The runner could not talk to GitLab's API while running the job.",
    "runner_configuration_error": "The runner's configuration is invalid for this job.",
    "runner_external_dependency_failure": "A service the runner depends on failed.",
    "runner_interrupted": "The runner was interrupted (shut down or restarted) mid-job.",
    "no_matching_runner": "No runner with the job's tags is available.",
    "stuck_or_timeout_failure": "The job was stuck or ran out of time.",
    "stuck_pending_with_matching_runners":
        "The job stayed pending: runners exist but none took it.",
    "stuck_pending_no_matching_runners": "The job stayed pending: no runner matches its tags.",
    "no_updates_running": "The runner stopped sending updates for the running job.",
    "no_updates_canceling": "The runner stopped sending updates while canceling the job.",
    "job_execution_timeout": "The job exceeded its timeout.",
    "job_execution_server_timeout": "GitLab stopped the job: it exceeded the server-side timeout.",
    "server_timeout_running": "GitLab stopped the job: it exceeded the server-side timeout.",
    "server_timeout_canceling": "GitLab stopped the job while canceling it (server timeout).",
    "missing_dependency_failure":
        "An artifact this job needs from an earlier job is missing or expired.",
}
