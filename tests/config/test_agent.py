"""The YAML model: errors with file, line and field; access under each environment; the old form."""

from __future__ import annotations

import logging

import pytest

from tasks.config.agent import DEFAULT_ACCESS, load_config
from tasks.config.errors import ConfigError

TARGET = """    namespace: shop
    deployment: web
    container: app
    image: registry.example.com/web:{sha}
"""


def load(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


def problems(tmp_path, text) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    return [line.strip().removeprefix("- ").replace(str(tmp_path) + "/", "")
            for line in str(exc.value).splitlines()[1:]]


def test_access_lives_under_its_environment(tmp_path):
    config = load(tmp_path, "environments:\n  staging:\n    access: {min_access: reporter}\n"
                            + TARGET + "  review:\n    access: {min_access: developer}\n")
    assert config.env_access("staging").min_access == "reporter"
    assert config.env_access("review").min_access == "developer"
    assert config.env_access("production") is None  # given for some: the defaults do not apply
    assert set(config.environments) == {"staging"}  # review has access rules, no target


def test_without_access_anywhere_the_defaults_apply(tmp_path):
    config = load(tmp_path, "environments:\n  staging:\n" + TARGET)
    assert config.access == DEFAULT_ACCESS and "staging" in config.environments


def test_the_old_top_level_form_is_read_with_a_warning_naming_file_and_line(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="devops_agent.config"):
        config = load(tmp_path, "chatops: {prefix: /ops}\naccess:\n  staging: {min_access: guest}\n")
    assert config.env_access("staging").min_access == "guest"
    [record] = caplog.records
    assert f"{tmp_path}/config.yaml:3: top-level `access:` is deprecated" in record.getMessage()
    assert "environments.staging.access" in record.getMessage()


def test_both_forms_for_one_environment_are_refused(tmp_path):
    found = problems(tmp_path, "environments:\n  staging:\n    access: {min_access: guest}\n"
                               "access:\n  staging: {min_access: owner}\n  production: {}\n")
    assert found == ["config.yaml:3: environments.staging.access: also given in the top-level access: "
                     "(line 5); keep only environments.staging.access"]


@pytest.mark.parametrize("text,expected", [
    ("environments:\n  staging:\n" + TARGET + "    strategy:\n      type: canary\n      interval: 0\n",
     "config.yaml:9: environments.staging.strategy.interval: Input should be greater than 0"),
    ("environments:\n  staging:\n    access:\n      min_access: wizard\n",
     "config.yaml:4: environments.staging.access.min_access: Value error, expected one of guest"),
    ("environments:\n  staging:\n    access:\n      approvals: 0\n",
     "config.yaml:4: environments.staging.access.approvals: Input should be greater than or equal to 1"),
    ("environments:\n  staging:\n" + TARGET + "    replicas: 3\n",
     "config.yaml:7: environments.staging.replicas: Extra inputs are not permitted"),
    ("environments:\n  Staging!:\n" + TARGET, "config.yaml:2: environments.Staging!: invalid environment"),
    ("environments: [staging]\n", "config.yaml:1: environments: expected a mapping"),
    ("pipeline_fixes:\n  threshold: 1\n",
     "config.yaml:2: pipeline_fixes.threshold: Input should be greater than or equal to 2"),
    ("labels:\n  deployed: deployed\n",
     "config.yaml:1: labels: Value error, labels.deployed must contain {env}"),
    ("chatops:\n  prefix: devops\n", "config.yaml:2: chatops.prefix"),
    ("a: &x [1]\nb: *x\n", "not valid YAML: aliases (*name) are not allowed"),  # libyaml: the anchor's line
    ("chatops: {prefix: [1, 2}\n", "config.yaml:1: not valid YAML"),
    ("unknown: 1\n", "config.yaml:1: unknown: Extra inputs are not permitted"),
])
def test_errors_name_file_line_and_field(tmp_path, text, expected):
    try:
        load(tmp_path, text)
    except ConfigError as exc:
        message = str(exc).replace(str(tmp_path) + "/", "")
    else:
        pytest.fail("accepted")
    assert expected in message


def test_every_problem_of_a_file_at_once(tmp_path):
    found = problems(tmp_path, "chatops:\n  prefix: nope\nenvironments:\n  staging:\n"
                               "    access: {min_access: wizard}\n" + TARGET
                               + "    verification: {interval: -1}\n")
    assert [f.split(": ")[0] + ": " + f.split(": ")[1] for f in found] == [
        "config.yaml:2: chatops.prefix",
        "config.yaml:5: environments.staging.access.min_access",
        "config.yaml:10: environments.staging.verification.interval",
    ]


def test_unreadable_oversized_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match=r"DEVOPS_AGENT_CONFIG: cannot read .*: No such file"):
        load_config(tmp_path / "missing.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("# x\n" * 300_000)
    with pytest.raises(ConfigError, match="larger than"):
        load_config(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"chatops:\n  prefix: \xff\n")
    with pytest.raises(ConfigError, match=r"bin.yaml:2: not UTF-8 text"):
        load_config(binary)


def test_an_empty_file_is_the_defaults(tmp_path):
    assert load(tmp_path, "# nothing yet\n").access == DEFAULT_ACCESS
