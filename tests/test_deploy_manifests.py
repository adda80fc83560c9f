"""deploy/: the manifests parse, and the embedded service config is one the service accepts."""

from pathlib import Path

import yaml

from tasks.config.agent import load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_manifests_parse_and_config_is_valid(tmp_path):
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "devops-agent-web") in kinds and ("Deployment", "devops-agent-worker") in kinds
    [config_map] = [d for d in docs if d["metadata"]["name"] == "devops-agent-config"]
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"])
    config = load_config(path)
    assert set(config.environments) == {"staging"} and config.gitlab_deployments
    for d in docs:
        if d["kind"] == "Deployment":
            for c in d["spec"]["template"]["spec"]["containers"]:
                env_names = {e["name"] for e in c.get("env", [])}
                assert not any(n in env_names for n in ("WEBHOOK_SECRET", "GITLAB_TOKEN")), \
                    "secrets come from files (*_FILE), never inline"
