"""Every default rule has a real log that it classifies (PyTorch's "one fixture per rule"), and
real logs of passing or harmless runs match nothing. The corpus and its manifest: fixtures/logs/."""

from __future__ import annotations

import re

import pytest

from tasks.ci.rules import load_table
from tasks.ci.rules.corpus import load_manifest
from tasks.ci.rules.table import CATEGORIES
from tests.support.logs import fixture_log

from .conftest import LOGS

# Rules that decide on GitLab's job fields alone: their fixture is a job with no log at all,
# which is exactly the case they exist for (runner died before the trace was written).
METADATA_FIXTURES = {
    "gitlab-timeout-reason": {"failure_reason": "job_execution_timeout"},
    "gitlab-runner-failure-reason": {"failure_reason": "runner_system_failure"},
    "exit-code-137": {"exit_code": 137},
}


ENTRIES = load_manifest(LOGS, CATEGORIES)
RULE_OF = {e.path: e.rule for e in ENTRIES if e.rule}
POSITIVE = sorted(RULE_OF)
NEGATIVE = sorted(e.path for e in ENTRIES if e.outcome == "passed")


def _fixture_rule(path):
    return RULE_OF[path]


def test_every_default_rule_has_a_fixture():
    table = load_table()
    with_logs = set(RULE_OF.values())
    missing = [r.id for r in table.rules if r.id not in with_logs and r.id not in METADATA_FIXTURES]
    assert not missing, f"rules without a fixture log: {missing}"
    unknown = with_logs - {r.id for r in table.rules}
    assert not unknown, f"fixture logs named after no rule: {unknown}"


def test_every_log_is_in_the_manifest():
    listed = {e.path for e in ENTRIES}
    unlisted = [str(p) for p in LOGS.rglob("*.log") if p.resolve() not in listed]
    assert not unlisted


@pytest.mark.parametrize("path", POSITIVE, ids=lambda p: p.name)
def test_fixture_classifies_as_its_rule(default_table, path):
    with open(path, "rb") as fh:
        result = default_table.classify(fh)
    rule = default_table.rule(_fixture_rule(path))
    assert result.rule_id == rule.id, (result.rule_id, result.also_matched)
    assert result.category == rule.category
    assert result.evidence, "a log rule must show the lines it matched"
    assert all(ev.line >= 1 and ev.text for ev in result.evidence)
    # Placeholders were filled from the captures, never left raw.
    assert not re.search(r"\{[A-Za-z_]\w*(\|[^{}]*)?\}", result.description)
    assert result.next_steps


@pytest.mark.parametrize("rule_id", sorted(METADATA_FIXTURES))
def test_metadata_rules_classify_without_a_log(default_table, rule_id):
    result = default_table.classify([], **METADATA_FIXTURES[rule_id])
    assert result.rule_id == rule_id
    assert result.evidence == []


@pytest.mark.parametrize("path", NEGATIVE, ids=lambda p: p.name)
def test_clean_logs_match_nothing(default_table, path):
    with open(path, "rb") as fh:
        result = default_table.classify(fh)
    assert result.category == "unknown", (result.rule_id, result.evidence)
    assert result.rule_id is None and result.also_matched == []


def test_a_test_printing_error_is_not_a_compile_error(default_table):
    # The passing run prints "error: could not connect ..." from inside a test.
    log = fixture_log("clean-pytest-pass.log").read_bytes()
    result = default_table.classify([log], failure_reason="script_failure")
    assert result.category != "compile_error"


def test_passing_pytest_summary_is_not_a_test_failure(default_table):
    summary = b"============================== 2 passed in 0.01s ===============================\n"
    assert default_table.classify([summary]).category == "unknown"
    assert default_table.classify([b"== 1 failed, 2 passed in 0.31s ==\n"]).category == "test_failure"


@pytest.mark.parametrize(
    "line",
    [
        b"Tests run: 23, Failures: 0, Errors: 0, Skipped: 0\n",  # surefire, all green
        b"10 examples, 0 failures\n",  # rspec, all green
        b"Total: 0 (HIGH: 0, CRITICAL: 0)\n",  # trivy, nothing found
        b"Found 9 errors (9 fixed, 0 remaining).\n",  # ruff --fix fixed everything
        b"ok  \tgithub.com/quii/learn-go-with-tests/select/v1\t0.051s\n",  # go test pass
    ],
)
def test_all_green_summaries_match_nothing(default_table, line):
    assert default_table.classify([line]).category == "unknown"


def test_infrastructure_outranks_its_symptoms(default_table):
    # A compiler killed by the OOM killer is an OOM, not a compile error; both are reported.
    log = fixture_log("oom-killed.log").read_bytes() + fixture_log("gcc-clang-error.log").read_bytes()
    result = default_table.classify([log])
    assert result.rule_id == "oom-killed"
    assert "gcc-clang-error" in result.also_matched


def test_log_rule_outranks_bare_failure_reason(default_table):
    # The runner's own message carries the reason; the failure_reason rule is reported too.
    log = fixture_log("runner-system-failure.log").read_bytes()
    result = default_table.classify([log], failure_reason="runner_system_failure")
    assert result.rule_id == "runner-system-failure"
    assert "timed out waiting for pod to start" in result.description
    assert "gitlab-runner-failure-reason" in result.also_matched


@pytest.mark.parametrize(
    "line, rule",
    [
        # The same failures as the fixtures, in other shapes users' logs have: colours, wrappers.
        (b"\x1b[31mFAILED\x1b[0m tests/test_x.py::test_y - assert 1 == 2", "pytest-failure"),
        (b"2024-05-14T08:27:39.000001Z 01O src/x.c:3:1: error: expected ';'", "gcc-clang-error"),
        (b"[0] npm ERR! 503 Service Unavailable - GET https://registry.npmjs.org/left-pad",
         "registry-http-5xx"),
        (b"/bin/bash: line 143:   812 Killed                  python train.py", "oom-killed"),
        # A web app's own 500 in its test output is not a registry outage.
        (b"127.0.0.1 - - GET /api/items 500 Internal Server Error", None),
        # npm 6's wording for a missing lockfile; apk's and dnf's for a missing OS package.
        ((b"npm ERR! `npm ci` can only install packages with an existing package-lock.json or "
          b"npm-shrinkwrap.json with lockfileVersion >= 1."), "npm-ci-lockfile-out-of-sync"),
        (b"#7 2.311 E: Package 'python-pip' has no installation candidate", "os-package-not-found"),
        (b"  libressl-dev (no such package):", "os-package-not-found"),
        (b"Error: Unable to find a match: python2-devel", "os-package-not-found"),
        # gcc names the signal in English or the system's language; a cancel is not memory.
        (b"g++: fatal error: Killed signal terminated program cc1plus", "oom-killed"),
        (b"gcc: fatal error: Terminated signal terminated program cc1", None),
        ((b"##[error]The runner has received a shutdown signal. This can happen when the runner "
          b"service is stopped, or a manually started runner is canceled."), "ci-runner-lost"),
        ((b"The connection to the server 10.12.0.2:6443 was refused - did you specify the right "
          b"host or port?"), "kubernetes-api-unreachable"),
        ((b"[ERROR] Failed to execute goal on project app: Could not resolve dependencies for project "
          b"g:app:jar:1.0: Could not transfer artifact g:lib:jar:2.0 from/to central "
          b"(https://repo.maven.apache.org/maven2): Connection reset"), "network-timeout"),
        (b"ESLint found too many warnings (maximum: 0).", "eslint-failure"),
        (b"Error: 2 tests failed.", "mocha-failure"),
        (b"[ERROR] Errors: ", "junit-surefire-failure"),
        (b"t/basic.t (Wstat: 256 (exited 1) Tests: 6 Failed: 3)", "perl-test-harness-failure"),
        (b"Failed 1/1 test scripts, 0.00% okay. 1/4 subtests failed, 75.00% okay.",
         "perl-test-harness-failure"),
        (b"Test Failed at /home/ci/.julia/dev/Foo/test/runtests.jl:12", "julia-test-failure"),
        (b"error: 2 vulnerabilities found!", "cargo-audit-vulnerabilities"),
    ],
)
def test_patterns_hold_beyond_the_fixtures(default_table, line, rule):
    assert default_table.classify([line + b"\n"]).rule_id == rule


def _as_gitlab_would_show(log: bytes) -> bytes:
    """The same log as a GitLab trace with FF_TIMESTAMPS, section markers and colour codes."""
    out = [b"\x1b[0Ksection_start:1700000000:step_script\r\x1b[0K"
           b"\x1b[0K\x1b[36;1mExecuting step_script\x1b[0;m\n"]
    for i, line in enumerate(log.splitlines()):
        if i % 2:
            line = b"\x1b[31;1m" + line.replace(b"error", b"\x1b[1merror\x1b[22m") + b"\x1b[0m"
        out.append(b"2024-05-14T08:27:%02d.%06dZ 01O " % (i % 60, i) + line + b"\n")
    out.append(b"\x1b[0Ksection_end:1700000099:step_script\r\x1b[0K\n")
    return b"".join(out)


@pytest.mark.parametrize("path", POSITIVE, ids=lambda p: p.name)
def test_fixtures_still_classify_as_gitlab_traces(default_table, path):
    plain = default_table.classify([path.read_bytes()])
    traced = default_table.classify([_as_gitlab_would_show(path.read_bytes())])
    assert traced.rule_id == plain.rule_id
    # One header line was added before the log: every evidence line moves down by one.
    assert [e.line - 1 for e in traced.evidence] == [e.line for e in plain.evidence]
    assert {e.section for e in traced.evidence} == {"step_script"}
    assert [e.captures for e in traced.evidence] == [e.captures for e in plain.evidence]
