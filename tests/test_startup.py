"""Start-up refuses broken configuration with a message naming the file, line and field."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.config import load_config
from tasks.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def run(*args, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    base.update({"PYTHONPATH": str(ROOT), **env})
    return subprocess.run([sys.executable, "-m", "tasks.cli", *args], env=base, cwd=ROOT,
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("env,message", [
    ({}, "WEBHOOK_SECRET is not set"),
    ({"WEBHOOK_SECRET": "short"}, "at least 8 characters"),
    ({"WEBHOOK_SECRET": "long-enough", "MAX_BODY_BYTES": "-1"}, "MAX_BODY_BYTES"),
    ({"WEBHOOK_SECRET": "long-enough", "WEBHOOK_SIGNING_KEY": "whsec_not base64!"}, "WEBHOOK_SIGNING_KEY"),
    ({"WEBHOOK_SECRET": "long-enough", "GITLAB_URL": "ftp://x"}, "GITLAB_URL"),
    ({"WEBHOOK_SECRET": "long-enough", "DRY_RUN": "maybe"}, "DRY_RUN"),
    ({"WEBHOOK_SECRET_FILE": "/nonexistent/secret"}, "cannot read"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_secret_values_never_appear_in_errors():
    with pytest.raises(ConfigError) as exc:
        load_settings({"WEBHOOK_SECRET": "abc", "GITLAB_TOKEN": "glpat-verysecret", "PORT": "x"})
    assert "glpat-verysecret" not in str(exc.value) and "abc" not in str(exc.value).split(":")[-1]


@pytest.mark.parametrize("text,where", [
    ("access:\n  staging:\n    min_access: wizard\n", "config.yaml:3: access.staging.min_access"),
    ("chatops:\n  prefix: devops\n", "config.yaml:2: chatops.prefix"),
    ("access:\n  prod:\n    deny_windows:\n      - {start: fri, end: mon 08:00}\n",
     "config.yaml:4: access.prod.deny_windows.0.start"),
    ("chatops: [1, 2\n", "config.yaml:2: not valid YAML"),  # where the parser gave up
    ("- a list\n", "config.yaml:1: the top level must be a mapping"),
    ("unknown_key: 1\n", "unknown_key"),
    ("environments:\n  staging: {namespace: shop}\n", "environments.staging"),
])
def test_config_errors_name_file_line_and_field(tmp_path, text, where):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert where in str(exc.value).replace(str(tmp_path) + "/", "")


def test_serve_refuses_a_broken_config_before_starting_anything(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("access:\n  staging: {min_access: wizard}\n")
    result = run("serve", "--data-dir", str(tmp_path / "data"), WEBHOOK_SECRET="long-enough",
                 DEVOPS_AGENT_CONFIG=str(path))
    assert result.returncode == 2
    assert b"min_access" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_serve_without_a_secret_says_so():
    result = run("serve")
    assert result.returncode == 2 and b"WEBHOOK_SECRET is not set" in result.stderr


def test_worker_without_redis_url_says_so():
    result = run("worker", WEBHOOK_SECRET="long-enough")
    assert result.returncode == 2 and b"REDIS_URL is not set" in result.stderr
