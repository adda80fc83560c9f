"""`devops-agent config check`: the effective configuration with origins, secrets masked."""

from __future__ import annotations

import pytest

from tasks.cli.main import main

TOKEN = "glpat-never-print-this-token"


@pytest.fixture
def clean_env(monkeypatch):
    """The variables start-up reads, cleared, so the machine's own environment does not leak in."""
    from tasks.config.settings import describe_settings, load_settings

    for name, _, _ in describe_settings(load_settings({}, require_secret=False)):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    return monkeypatch


def test_prints_every_setting_with_its_origin_and_masks_secrets(tmp_path, clean_env, capsys):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    config = tmp_path / "config.yaml"
    config.write_text("environments:\n  staging:\n    access: {min_access: reporter}\n")
    clean_env.setenv("WEBHOOK_SECRET", TOKEN + "-webhook")
    clean_env.setenv("GITLAB_TOKEN_FILE", str(token))
    clean_env.setenv("REDIS_URL", "redis://:r3dis-pass@127.0.0.1:6379/0")
    clean_env.setenv("PORT", "9000")
    assert main(["config", "check", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert TOKEN not in out + err and "r3dis-pass" not in out + err
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()
             if line.startswith("  ") and line.split() and line.split()[0].isupper()}
    assert lines["GITLAB_TOKEN"] == ["**********", "file", str(token)]
    assert lines["WEBHOOK_SECRET"] == ["**********", "environment"]
    assert lines["PORT"] == ["9000", "environment"]
    assert lines["MAX_BODY_BYTES"] == ["26214400", "default"]
    assert lines["REDIS_URL"] == ["redis://:**********@127.0.0.1:6379/0", "environment"]
    assert lines["DEVOPS_AGENT_CONFIG"] == [str(config), "environment"]
    assert f"YAML configuration: {config}" in out and "min_access: reporter" in out


def test_exit_2_with_every_error(tmp_path, clean_env, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("environments:\n  staging:\n    access: {min_access: wizard}\n")
    clean_env.setenv("WEBHOOK_SECRET", "short")
    clean_env.setenv("GITLAB_TOKEN", TOKEN)
    clean_env.setenv("PORT", "http")
    assert main(["config", "check", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and TOKEN not in err and "short" not in err.replace("shorter", "")
    assert "WEBHOOK_SECRET: every secret must be at least 8" in err and "PORT='http'" in err
    assert f"{config}:3: environments.staging.access.min_access" in err


def test_without_a_file_the_defaults(clean_env, capsys):
    clean_env.setenv("WEBHOOK_SECRET", "long-enough-secret")
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "YAML configuration: none (the defaults)" in out and "production:" in out
