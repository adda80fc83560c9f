"""`devops-agent classify` and `devops-agent rules check`: output shapes, exit codes, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tasks.cli.main import main
from tests.support.logs import fixture_log

from .conftest import ROOT, write_rules


@pytest.fixture(autouse=True)
def no_env_rules(monkeypatch):
    monkeypatch.delenv("RULES_FILE", raising=False)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_json_shape(capsys):
    code, out, _ = run(capsys, "classify", str(fixture_log("gcc-clang-error.log")), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"category", "rule", "description", "evidence", "also_matched", "next_steps",
                         "reaction"}
    assert data["category"] == "compile_error" and data["rule"] == "gcc-clang-error"
    ev = data["evidence"][0]
    assert ev == {
        "line": 9,
        "text": "src/main.c:136:52: error: 'BOOTLOADER_VERSION' undeclared (first use in this function)",
        "captures": {"file": "src/main.c", "line": "136",
                     "message": "'BOOTLOADER_VERSION' undeclared (first use in this function)"},
        "section": None,
    }
    assert data["reaction"] == {"kind": "fix", "max_retries": 0, "labels": []}


def test_classify_text_puts_verdict_first(capsys):
    code, out, _ = run(capsys, "classify", str(fixture_log("network-dns.log")))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "network_error  (rule network-dns)"
    assert "gitlab.dev.singlecell.gi.ucsc.edu" in lines[1]
    assert any(line.lstrip().startswith("13 ") and "Could not resolve host" in line for line in lines)
    assert "next steps:" in out


def test_unknown_is_exit_1_and_metadata_flags_work(capsys):
    assert run(capsys, "classify", str(fixture_log("clean-gitlab-job.log")))[0] == 1
    clean = str(fixture_log("clean-gitlab-job.log"))
    code, out, _ = run(capsys, "classify", clean, "--exit-code", "137", "--format", "json")
    assert code == 0 and json.loads(out)["rule"] == "exit-code-137"
    code, out, _ = run(capsys, "classify", clean, "--failure-reason", "stuck_pending_no_matching_runners",
                       "--job-name", "build", "--stage", "build")
    assert code == 0 and out.startswith("job_timeout")


def test_missing_unreadable_and_directory_logs(capsys, tmp_path):
    code, _, err = run(capsys, "classify", str(tmp_path / "nope.log"))
    assert code == 2 and "cannot read LOG" in err and "Traceback" not in err
    code, _, err = run(capsys, "classify", str(tmp_path))
    assert code == 2 and "directory" in err
    locked = tmp_path / "locked.log"
    locked.write_text("x")
    locked.chmod(0)
    try:
        code, _, err = run(capsys, "classify", str(locked))
        assert code in (1, 2)  # root can read anything; others get a clear error
    finally:
        locked.chmod(0o600)


def test_empty_log_is_unknown_but_failure_reason_still_classifies(capsys, tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    code, out, _ = run(capsys, "classify", str(empty))
    assert code == 1 and "empty" in out
    code, out, _ = run(capsys, "classify", str(empty), "--failure-reason", "runner_system_failure",
                       "--format", "json")
    assert code == 0 and json.loads(out)["category"] == "runner_system_failure"


def test_binary_garbage_warns_and_classifies(capsys, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4000)
    code, out, err = run(capsys, "classify", str(junk))
    assert code == 1 and out.startswith("unknown") and "binary" in err


def test_bad_exit_code_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["classify", "x.log", "--exit-code", "abc"])
    assert exc.value.code == 2


def test_invalid_user_rules_exit_3(capsys, tmp_path):
    bad = write_rules(tmp_path, "rules:\n  - id: x\n    category: nope\n    match: {exit_code: 1}\n")
    code, _, err = run(capsys, "classify", str(fixture_log("disk-full.log")), "--rules", str(bad))
    assert code == 3 and f"{bad}:3: rule x: category" in err


def test_rules_file_from_environment(capsys, tmp_path, monkeypatch):
    user = write_rules(tmp_path, "rules:\n  - id: mine\n    category: disk_full\n    priority: 0\n"
                                 "    match: {log: 'Filesystem'}\n")
    monkeypatch.setenv("RULES_FILE", str(user))
    code, out, _ = run(capsys, "classify", str(fixture_log("disk-full.log")), "--format", "json")
    assert code == 0 and json.loads(out)["rule"] == "mine"


def test_rules_check(capsys, tmp_path):
    assert run(capsys, "rules", "check")[0] == 0
    good = write_rules(tmp_path, "rules:\n  - id: mine\n    category: disk_full\n    match: {log: 'df'}\n")
    code, out, _ = run(capsys, "rules", "check", str(good))
    assert code == 0 and "ok" in out
    bad = write_rules(tmp_path, "rules:\n  - id: a\n    category: nope\n    match: {log: '(a)\\1'}\n"
                                "    bogus: 1\n", "bad.yaml")
    code, out, err = run(capsys, "rules", "check", str(bad))
    assert code == 1
    assert out.splitlines() == [
        f"{bad}:3: rule a: category: unknown category 'nope' (known: "
        + out.splitlines()[0].split("(known: ")[1],
        f"{bad}:4: rule a: match.log: bad regular expression: invalid escape sequence: \\1 "
        "(backreferences and lookaround are not supported: rules must run in linear time)",
        f"{bad}:5: rule a: bogus: unknown key in rule (known: category, description, enabled, "
        "exclude, id, match, next_steps, priority, reaction, warning_lines)",
    ]
    assert "3 problems found" in err
    code, out, _ = run(capsys, "rules", "check", str(tmp_path / "missing.yaml"))
    assert code == 1 and "cannot read" in out


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out and "3  the rules table is invalid" in out


def test_stdin_in_a_real_process():
    log = fixture_log("docker-rate-limit.log").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.cli.main", "classify", "-", "--format", "json"],
        input=log,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["category"] == "docker_rate_limit"
