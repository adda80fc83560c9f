"""Which project and environment an alert is about, and how severe it is.

An explicit label wins: `devops_agent_env` names a configured environment and
`devops_agent_project` the project (id or path) whose deploys run there. Otherwise the alert's
`namespace` and `deployment` labels are compared with each environment's Kubernetes target
(its Deployment, or for blue-green and canary the Deployments the strategy names). The project
then comes from `environments.<env>.alerts.project`, else `incidents.default_project`. Label
names are configurable (`incidents:`). A group's target is that of its first alert that maps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.config.environments import BlueGreenStrategy, CanaryStrategy, EnvironmentConfig
from tasks.config.incidents import IncidentsConfig


@dataclass(frozen=True)
class Target:
    env: str | None
    project: str | None
    how: str  # how the environment was found, or why not


def deployment_names(cfg: EnvironmentConfig) -> set[str]:
    names = {cfg.deployment}
    if isinstance(cfg.strategy, BlueGreenStrategy):
        names |= {cfg.strategy.deployment_pattern.format(deployment=cfg.deployment, color=c)
                  for c in cfg.strategy.colors}
    elif isinstance(cfg.strategy, CanaryStrategy):
        names.add(cfg.strategy.canary_deployment.format(deployment=cfg.deployment))
    return names


def target_for(labels: Mapping[str, str], incidents: IncidentsConfig,
               environments: Mapping[str, EnvironmentConfig]) -> Target:
    env: str | None = None
    named = labels.get(incidents.environment_label)
    if named:
        if named in environments:
            env, how = named, f"label {incidents.environment_label}"
        else:
            how = f"label {incidents.environment_label} names no configured environment"
    else:
        ns, dep = labels.get(incidents.namespace_label), labels.get(incidents.deployment_label)
        found = [name for name, cfg in environments.items()
                 if ns and dep and cfg.namespace == ns and dep in deployment_names(cfg)]
        if len(found) == 1:
            env, how = found[0], f"{incidents.namespace_label} + {incidents.deployment_label}"
        elif found:
            how = f"{len(found)} environments run {ns}/{dep}; name one with " \
                  f"{incidents.environment_label}"
        else:
            how = "no environment matches the alert's labels"
    project = labels.get(incidents.project_label) or None
    if project is None and env is not None:
        project = environments[env].alerts.project
    return Target(env=env, project=project or incidents.default_project, how=how)


def group_target(alerts: list[Any], common: Mapping[str, str], incidents: IncidentsConfig,
                 environments: Mapping[str, EnvironmentConfig]) -> Target:
    """The first alert (firing ones first, earliest first) whose labels name an environment."""
    ordered = sorted(alerts, key=lambda a: (a.status != "firing", a.starts_at, a.fingerprint))
    first: Target | None = None
    for alert in ordered:
        target = target_for({**common, **alert.labels}, incidents, environments)
        if target.env is not None:
            return target
        first = first or target
    return first or target_for(common, incidents, environments)


def severity_of(labels: Mapping[str, str], incidents: IncidentsConfig) -> str:
    return incidents.severity(labels.get(incidents.severity_label))


def highest(levels: list[str], incidents: IncidentsConfig) -> str:
    return max(levels, key=incidents.rank, default="unknown")
