"""Start-up refuses broken configuration with a message naming the file, line and field."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.config.agent import load_config
from tasks.config.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def run(*args, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    base.update({"PYTHONPATH": str(ROOT), **env})
    return subprocess.run([sys.executable, "-m", "tasks.cli.main", *args], env=base, cwd=ROOT,
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


SECRET_IN_FILE = "a-secret-that-must-never-be-printed"


@pytest.mark.parametrize("name,text,where", [
    ("s.yaml", f"acme/*: [{SECRET_IN_FILE}, short]\n", "s.yaml:1: acme/* secret 2: shorter than 8"),
    ("s.yaml", f"acme/*:\n  - {SECRET_IN_FILE}\n  - tiny\n", "s.yaml:3: acme/* secret 2: shorter"),
    ("s.yaml", f"acme shop: {SECRET_IN_FILE}\n", "s.yaml:1: 'acme shop': not a project path"),
    ("s.yaml", f"a/b: {SECRET_IN_FILE}\nA/B: {SECRET_IN_FILE}x\n",
     "s.yaml:2: A/B: listed twice (first on line 1)"),
    ("s.yaml", f"ok/x: {SECRET_IN_FILE}\nacme/*:\n", "s.yaml:2: acme/*: no secret given"),
    ("s.yaml", "acme/*: {nested: mapping}\n", "s.yaml:1: acme/*: expected a secret or a list"),
    ("s.yaml", f"- {SECRET_IN_FILE}\n", "s.yaml:1: the top level must be a mapping"),
    ("s.yaml", f"acme/*: [{SECRET_IN_FILE}\n", "s.yaml:2: not valid YAML"),
    ("s.yaml", "", "s.yaml:1: no bindings"),
    ("s.json", f'{{\n  "acme/*": ["{SECRET_IN_FILE}", 12345678]\n}}',
     "s.json:2: acme/* secret 2: expected a secret (a string)"),
    ("s.json", f'{{"a/b": "{SECRET_IN_FILE}",\n\t"0": "{SECRET_IN_FILE}"}}', "s.json:2: '0': not a project"),
    ("s.json", f'{{"a/b": "{SECRET_IN_FILE}",\n}}', "s.json:2: not valid JSON"),
    ("s.json", f'{{"a/b": " {SECRET_IN_FILE}"}}', "s.json:1: a/b: has surrounding spaces"),
])
def test_secrets_file_errors_name_file_line_and_field(tmp_path, name, text, where):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings({"WEBHOOK_SECRETS_FILE": str(path)})
    message = str(exc.value).replace(str(tmp_path) + "/", "")
    assert where in message
    assert SECRET_IN_FILE not in message and "tiny" not in message and "short," not in message


def test_secrets_file_that_cannot_be_read(tmp_path):
    with pytest.raises(ConfigError, match="WEBHOOK_SECRETS_FILE: cannot read"):
        load_settings({"WEBHOOK_SECRETS_FILE": str(tmp_path / "missing.yaml")})


def test_secrets_file_bindings_and_the_global_secret_together(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"acme/*: [{SECRET_IN_FILE}, {SECRET_IN_FILE}-old]\n\"42\": id-secret-42\n")
    settings = load_settings({"WEBHOOK_SECRETS_FILE": str(path), "WEBHOOK_SECRET": "global-one"})
    assert [(b.pattern, len(b.secrets)) for b in settings.webhook_bindings] == [("acme/*", 2),
                                                                               ("42", 1)]
    assert SECRET_IN_FILE not in repr(settings)
    assert {SECRET_IN_FILE, "id-secret-42", "global-one"} <= set(settings.secret_values())


def test_receiver_server_limits_are_validated():
    with pytest.raises(ConfigError, match="HEADER_TIMEOUT_SECONDS"):
        load_settings({"WEBHOOK_SECRET": "long-enough", "HEADER_TIMEOUT_SECONDS": "0"})
    with pytest.raises(ConfigError, match="MAX_BUFFERED_BYTES"):
        load_settings({"WEBHOOK_SECRET": "long-enough", "MAX_BODY_BYTES": "1000",
                       "MAX_BUFFERED_BYTES": "999"})
    from tasks.config.settings import server_limits

    limits = server_limits({"MAX_BODY_BYTES": str(100 * 1024 * 1024), "BODY_TIMEOUT_SECONDS": "3"})
    assert limits.max_buffered_bytes == 200 * 1024 * 1024 and limits.body_timeout == 3


def test_serve_with_a_broken_secrets_file_says_where(tmp_path):
    path = tmp_path / "secrets.yaml"
    path.write_text(f"acme/*: {SECRET_IN_FILE}\nbad pattern: {SECRET_IN_FILE}\n")
    result = run("serve", "--data-dir", str(tmp_path / "data"), WEBHOOK_SECRETS_FILE=str(path))
    assert result.returncode == 2
    assert b"secrets.yaml:2: 'bad pattern'" in result.stderr and b"Traceback" not in result.stderr
    assert SECRET_IN_FILE.encode() not in result.stderr
    assert not (tmp_path / "data").exists()
