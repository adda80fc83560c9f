"""How the worker builds its adapters from settings: once per process, on its first task."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tasks.ci.rules import load_table
from tasks.config.agent import load_config
from tasks.deploy.driver import KubeDeployer
from tasks.gitlab.client import GitLabAdapter

log = logging.getLogger("devops_agent.adapters")


def _gitlab(rt: Any) -> Any:
    s = rt.settings
    if not s.gitlab_url or not s.gitlab_token:
        log.warning("GITLAB_URL / GITLAB_TOKEN not set: handlers will only log their decisions")
        return None
    return GitLabAdapter(s.gitlab_url, s.gitlab_token.value, dry_run=s.dry_run,
                         max_log_bytes=s.max_log_bytes, timeout=s.gitlab_timeout_seconds)


def _rules(rt: Any) -> Any:
    return load_table(rt.settings.rules_file)


def _config(rt: Any) -> Any:
    return load_config(rt.settings.config_file)


def _deployer(rt: Any) -> Any:
    # Always the real one: an environment without a Kubernetes target is refused by it, so no
    # stand-in ever reports a deploy that did not happen.
    s = rt.settings
    return KubeDeployer(redis=rt.redis, schedule=rt.schedule, config=rt.adapter("config"),
                        gitlab=rt.adapter("gitlab"), dry_run=s.dry_run,
                        lease_seconds=s.task_lease_seconds)


def default_factories() -> dict[str, Callable[[Any], Any]]:
    return {"gitlab": _gitlab, "rules": _rules, "config": _config, "deployer": _deployer}
