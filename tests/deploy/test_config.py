"""Deploy configuration: the documented example loads; bad input names environment and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tasks.config.environments import (
    BlueGreenStrategy,
    CanaryStrategy,
    ConfigError,
    RollingStrategy,
    fill,
    parse_environments,
)

DOC = Path(__file__).resolve().parents[2] / "README.md"

BASE = {"namespace": "shop", "deployment": "web", "container": "app", "image": "reg/web:{sha}"}


def test_documented_example_loads():
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
                 if b.startswith("environments:\n  review:"))
    envs = parse_environments(yaml.safe_load(block), "README.md")
    assert set(envs) == {"review", "staging", "production"}
    prod = envs["production"]
    assert isinstance(prod.strategy, CanaryStrategy) and prod.strategy.interval == 300
    assert prod.credentials.mode == "kubeconfig" and prod.auto_deploy.min_access_level == 40
    assert isinstance(envs["staging"].strategy, RollingStrategy)
    assert envs["staging"].strategy.max_unavailable == 0
    assert prod.image_for("0123456789abcdef") == "registry.example.com/shop/web:0123456789abcdef"
    # auto-deploy rules
    assert envs["review"].auto_deploys("feature/x", "main") and not envs["review"].auto_deploys("main", "main")
    assert envs["staging"].auto_deploys("main", "main") and not envs["staging"].auto_deploys("feature/x", "main")
    assert not prod.auto_deploys("main", "main")
    # PromQL braces survive, known placeholders are filled
    q = fill(prod.prometheus[0].query, {"deployment": "web-canary"})
    assert 'deployment="web-canary",code=~"5.."' in q


def test_defaults():
    env = parse_environments({"environments": {"dev": BASE}}, "x")["dev"]
    assert env.strategy == RollingStrategy(max_surge="25%", max_unavailable="25%")
    assert env.credentials.mode == "in_cluster" and env.auto_deploy.trigger == "manual"
    assert env.timings.rollout_timeout == 600 and env.verification.interval == 10
    bg = parse_environments({"environments": {"p": {**BASE, "strategy": {"type": "blue_green", "service": "web"}}}},
                            "x")["p"].strategy
    assert isinstance(bg, BlueGreenStrategy) and bg.colors == ("blue", "green") and bg.switch_traffic == "auto"


@pytest.mark.parametrize("env, expected", [
    ({**BASE, "strategy": {"type": "canary", "interval": 0}},
     "x.yaml: environments.production.strategy.interval: Input should be greater than 0"),
    ({**BASE, "strategy": {"type": "bluegreen"}},
     "environments.production.strategy: Input tag 'bluegreen'"),
    ({**BASE, "strategy": {"type": "blue_green"}},
     "environments.production.strategy.service: Field required"),
    ({**BASE, "strategy": {"type": "rolling", "max_surge": "lots"}},
     "environments.production.strategy.max_surge: Value error, must be a non-negative integer or a percentage"),
    ({**BASE, "deployment": "Web_App"}, "environments.production.deployment: Value error, 'Web_App' is not a valid"),
    ({k: v for k, v in BASE.items() if k != "container"}, "environments.production.container: Field required"),
    ({**BASE, "image": "reg/web:{commit}"}, "environments.production.image: Value error, unknown placeholder"),
    ({**BASE, "credentials": {"mode": "kubeconfig"}}, "environments.production.credentials: Value error, mode kubeconfig needs"),
    ({**BASE, "health_checks": [{"url": "web/healthz"}]},
     "environments.production.health_checks.0.url: Value error, must start with http"),
    ({**BASE, "health_checks": [{"url": "http://{colour}.svc/healthz"}]},
     "environments.production.health_checks.0.url: Value error, unknown placeholder(s) ['colour']"),
    ({**BASE, "prometheus": [{"name": "e", "url": "http://p", "query": "up"}]},
     "environments.production.prometheus.0.threshold: Field required"),
    ({**BASE, "replicas": 3}, "environments.production.replicas: Extra inputs are not permitted"),
])
def test_errors_name_environment_and_field(env, expected):
    with pytest.raises(ConfigError) as err:
        parse_environments({"environments": {"production": env}}, "x.yaml")
    assert expected in str(err.value)


def test_every_bad_environment_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        parse_environments({"environments": {"a": {**BASE, "namespace": "NS"}, "b": "nope", "c": BASE}}, "x")
    text = str(err.value)
    assert "environments.a.namespace" in text and "environments.b: expected a mapping" in text
    with pytest.raises(ConfigError, match="non-empty mapping"):
        parse_environments({"environments": {}}, "x")
