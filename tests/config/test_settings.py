"""Settings from the environment: every variable's bad values, `_FILE` handling, and masking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.config.converters import MAX_VALUE_CHARS
from tasks.config.errors import ConfigError
from tasks.config.settings import Secret, Settings, describe_settings, load_settings

OK = {"WEBHOOK_SECRET": "long-enough-secret"}
TOKEN = "glpat-never-print-this-token"
SIGNING = "whsec_" + "c2VjcmV0LWtleS0xMjM0NTY3OA=="  # 20 bytes once decoded


def error(env: dict[str, str], **kw) -> str:
    with pytest.raises(ConfigError) as exc:
        load_settings({**OK, **env}, **kw)
    return str(exc.value)


# Every variable, with values that must be refused and a word the message must contain.
BAD = {
    "MAX_BODY_BYTES": (["0", "-1", "x", "1.5", "99999999999999999999999"], None),
    "DEDUP_TTL_SECONDS": (["0", "ten"], None),
    "REDELIVER_AFTER_SECONDS": (["0", "-2", "inf", "nan", "soon"], None),
    "TASK_LEASE_SECONDS": (["0", "1e999"], None),
    "VISIBILITY_TIMEOUT_SECONDS": (["0", "5m"], None),
    "INBOX_RETENTION_SECONDS": (["-5"], "positive"),
    "BODY_RETENTION_SECONDS": (["0"], "positive"),
    "RECONCILE_INTERVAL_SECONDS": (["-1", "inf"], None),
    "RECONCILE_LOOKBACK_SECONDS": (["0"], "positive"),
    "HEADER_TIMEOUT_SECONDS": (["0", "-0.5"], "positive"),
    "BODY_TIMEOUT_SECONDS": (["0", "inf"], None),
    "MAX_BUFFERED_BYTES": (["0"], "positive"),
    "LOG_LEVEL": (["loud", "TRACE"], "expected DEBUG"),
    "GITLAB_URL": (["ftp://gitlab", "gitlab.example.com"], "http(s)://"),
    "GITLAB_TIMEOUT_SECONDS": (["0"], "positive"),
    "DRY_RUN": (["maybe", "2"], "expected one of"),
    "RETRY_BUDGET": (["-1", "two"], None),
    "OUTAGE_JOB_THRESHOLD": (["0"], "positive"),
    "BREAKER_PROJECTS": (["0"], "positive"),
    "BREAKER_WINDOW_SECONDS": (["0"], "positive"),
    "MAX_LOG_BYTES": (["0"], "positive"),
    "PORT": (["0", "65536", "http"], None),
    "WEB_CONCURRENCY": (["0"], "positive"),
    "WORKER_CONNECTIONS": (["0"], "positive"),
    "WORKER_CONCURRENCY": (["-3"], "positive"),
    "WORKER_POOL": (["gevent"], "expected prefork"),
    "WORKER_METRICS_PORT": (["99999"], "TCP port"),
    "REDIS_MAXMEMORY": (["lots", "-1gb", "1tb"], "expected a size"),
    "REDIS_APPENDFSYNC": (["everysec", "sometimes"], "expected no or always"),
    "REDIS_URL": (["http://redis:6379", "localhost:6379"], "redis://"),
    "WEBHOOK_SIGNING_KEY": (["whsec_not base64!", "whsec_c2hvcnQ="], None),
}


@pytest.mark.parametrize("name,value,word",
                         [(n, v, w) for n, (vals, w) in BAD.items() for v in vals])
def test_every_bad_value_names_the_variable(name, value, word):
    message = error({name: value})
    assert name in message
    if word:
        assert word in message


@pytest.mark.parametrize("name", ["TASK_QUEUE", "GITLAB_URL", "DATA_DIR", "HANDLERS", "BOT_USERNAME",
                                  "LABEL_FAILED", "INCIDENT_PROJECT", "PORT"])
def test_hostile_values_are_refused_before_parsing(name):
    assert "control characters" in error({name: "fine\nINJECTED=1"})
    assert "control characters" in error({name: "nul\x00byte"})
    message = error({name: "x" * (MAX_VALUE_CHARS + 1)})
    assert f"longer than {MAX_VALUE_CHARS}" in message and "xxxxxxxxxx" * 10 not in message


def test_an_oversized_number_is_refused_and_not_echoed_whole():
    message = error({"MAX_BODY_BYTES": "9" * 200})
    assert "MAX_BODY_BYTES" in message and "9" * 100 not in message


def test_defaults_and_typed_values():
    s = load_settings(OK)
    assert (s.max_body_bytes, s.port, s.worker_pool, s.redis_appendfsync, s.host) == \
        (25 * 1024 * 1024, 8080, "prefork", "no", None)
    s = load_settings({**OK, "PORT": " 9090 ", "DRY_RUN": "yes", "GITLAB_PROJECTS": "a/*, 12,,",
                       "LOG_LEVEL": "debug", "GITLAB_URL": "https://gl.example/", "WORKER_POOL": "Solo",
                       "DEVOPS_AGENT_CACHE_DIR": "", "REDIS_MAXMEMORY": "512MB"})
    assert (s.port, s.dry_run, s.gitlab_projects, s.log_level, s.gitlab_url, s.worker_pool) == \
        (9090, True, ("a/*", "12"), "DEBUG", "https://gl.example", "solo")
    assert s.cache_dir == "" and s.redis_maxmemory == "512mb"  # "" keeps its meaning: cache off
    assert load_settings({**OK, "PORT": ""}).port == 8080  # empty is unset, as before


def test_missing_secret_and_every_problem_at_once():
    message = error({"WEBHOOK_SECRET": "", "PORT": "x", "DRY_RUN": "perhaps"})
    assert "WEBHOOK_SECRET is not set" in message and "PORT=" in message and "DRY_RUN=" in message
    assert load_settings({}, require_secret=False).webhook_secrets == ()
    assert "WEBHOOK_SECRET is not set" in error({"WEBHOOK_SECRET": " , "})


def test_cross_field_check():
    assert "MAX_BUFFERED_BYTES: must be at least MAX_BODY_BYTES" in error(
        {"MAX_BODY_BYTES": "1000", "MAX_BUFFERED_BYTES": "999"})


# --- <NAME>_FILE

@pytest.mark.parametrize("name,attr", [("WEBHOOK_SECRET", "webhook_secrets"),
                                       ("GITLAB_TOKEN", "gitlab_token"),
                                       ("AUDIT_TOKEN", "audit_token"),
                                       ("SENTRY_DSN", "sentry_dsn"),
                                       ("WEBHOOK_SIGNING_KEY", "webhook_signing_key"),
                                       ("REDIS_URL", "redis_url")])
def test_every_secret_can_come_from_a_file(tmp_path, name, attr):
    value = {"WEBHOOK_SIGNING_KEY": SIGNING, "REDIS_URL": "redis://:p4ssw0rd-x@h:6379/0",
             "SENTRY_DSN": "https://key@sentry.example/1"}.get(name, TOKEN)
    path = tmp_path / "secret"
    path.write_text(value + "\n")  # a trailing newline is not part of the secret
    base = {} if name == "WEBHOOK_SECRET" else OK
    s = load_settings({**base, f"{name}_FILE": str(path)})
    got = getattr(s, attr)
    got = got[-1] if isinstance(got, tuple) else got
    assert (got.value if isinstance(got, Secret) else got) == value
    assert s.origins[attr] == f"file {path}"


@pytest.mark.parametrize("name", ["WEBHOOK_SECRET", "GITLAB_TOKEN", "AUDIT_TOKEN", "SENTRY_DSN",
                                  "WEBHOOK_SIGNING_KEY", "REDIS_URL"])
def test_file_problems_name_the_variable(tmp_path, name):
    base = {} if name == "WEBHOOK_SECRET" else OK  # OK itself sets WEBHOOK_SECRET

    def bad(env: dict[str, str]) -> str:
        with pytest.raises(ConfigError) as exc:
            load_settings({**base, **env}, require_secret=False)
        return str(exc.value)

    missing = tmp_path / "missing"
    assert f"{name}_FILE: cannot read {missing}: No such file or directory" in \
        bad({f"{name}_FILE": str(missing)})
    assert "Is a directory" in bad({f"{name}_FILE": str(tmp_path)})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert f"{name}_FILE: {empty} is empty" in bad({f"{name}_FILE": str(empty)})
    big = tmp_path / "big"
    big.write_text("s" * (MAX_VALUE_CHARS + 10))
    assert "is larger than" in bad({f"{name}_FILE": str(big)})
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + TOKEN.encode())
    assert "is not UTF-8 text" in bad({f"{name}_FILE": str(binary)})
    both = tmp_path / "both"
    both.write_text(TOKEN)
    message = bad({f"{name}_FILE": str(both), name: TOKEN})
    assert f"{name} and {name}_FILE are both set" in message and TOKEN not in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    path.chmod(0)
    assert "GITLAB_TOKEN_FILE: cannot read" in error({"GITLAB_TOKEN_FILE": str(path)})


def test_unreadable_file_as_a_fifo_is_refused_without_hanging(tmp_path):
    # Root reads every file, so "unreadable" is exercised with what cannot be opened as one:
    # a path through a regular file.
    path = tmp_path / "token"
    path.write_text(TOKEN)
    assert "Not a directory" in error({"GITLAB_TOKEN_FILE": str(path / "inside")})


# --- masking

def test_secrets_are_masked_in_repr_str_dump_and_errors(tmp_path):
    s = load_settings({"WEBHOOK_SECRET": TOKEN, "GITLAB_TOKEN": TOKEN + "-2", "AUDIT_TOKEN": TOKEN + "-3",
                       "WEBHOOK_SIGNING_KEY": SIGNING, "SENTRY_DSN": "https://k3y-s3cret@s.example/1",
                       "REDIS_URL": "redis://user:r3dis-pass@h:6379/0"})
    for text in (repr(s), str(s), str(s.model_dump()), s.model_dump_json(), repr(s.gitlab_token)):
        assert TOKEN not in text and "r3dis-pass" not in text and "k3y-s3cret" not in text
        assert "c2VjcmV0" not in text
    assert {TOKEN, TOKEN + "-2", "r3dis-pass"} <= set(s.secret_values())
    message = error({"WEBHOOK_SECRET": "short", "REDIS_URL": "http://u:r3dis-pass@h",
                     "GITLAB_TOKEN": TOKEN, "WEBHOOK_SIGNING_KEY": "whsec_" + TOKEN})
    assert "short" not in message.replace("shorter", "") and "r3dis-pass" not in message
    assert TOKEN not in message


def test_describe_settings_masks_and_says_where_each_value_came_from(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    s = load_settings({**OK, "GITLAB_TOKEN_FILE": str(token), "PORT": "9000",
                       "REDIS_URL": "redis://:r3dis-pass@h/0"})
    rows = {name: (value, origin) for name, value, origin in describe_settings(s)}
    assert rows["GITLAB_TOKEN"] == ("**********", f"file {token}")
    assert rows["WEBHOOK_SECRET"] == ("**********", "environment")
    assert rows["PORT"] == ("9000", "environment")
    assert rows["MAX_BODY_BYTES"] == ("26214400", "default")
    assert rows["REDIS_URL"] == ("redis://:**********@h/0", "environment")
    assert rows["AUDIT_TOKEN"] == ("unset", "default")
    assert set(rows) >= {"VISIBILITY_TIMEOUT_SECONDS", "HOST", "WORKER_POOL", "REDIS_MAXMEMORY",
                         "DEVOPS_AGENT_CACHE_DIR", "WORKER_METRICS_HOST", "RULES_FILE"}


def test_settings_built_in_code_take_typed_values():
    s = Settings(webhook_secrets=(Secret("w"),), gitlab_url="https://gl.example", port=81)
    assert s.webhook_secrets[0].value == "w" and s.port == 81
    with pytest.raises(ValueError):
        Settings(port=0)


def test_readme_lists_every_variable():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("## Settings"):]
    missing = [name for name, _, _ in describe_settings(load_settings(OK)) if f"`{name}`" not in table]
    assert missing == []
