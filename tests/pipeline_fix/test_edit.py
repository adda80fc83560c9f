"""The `.gitlab-ci.yml` edit on real files: one key of one job changes, every other byte stays
(comments, anchors, merge keys, quoting, indentation, order); inherited values are respected;
includes, shared anchors and bounds are refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ci.pipeline_fix.edit import parse, plan_retry, plan_timeout
from tasks.ci.pipeline_fix.merged import Skip, load_merged
from tests.support.fake_gitlab.ci_lint import lint

FIXTURES = Path(__file__).parent / "fixtures"
H = 3600.0


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def added_lines(old: str, new: str) -> list[str]:
    """The lines `new` adds, checking that it only adds: removing them gives `old` back."""
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    i = 0
    while i < len(old_lines) and old_lines[i] == new_lines[i]:
        i += 1
    extra = len(new_lines) - len(old_lines)
    assert extra > 0 and new_lines[:i] + new_lines[i + extra:] == old_lines
    return new_lines[i:i + extra]


def lints(content: str, files: dict | None = None) -> dict:
    project = {"web_url": "https://gitlab.example/g/p", "path_with_namespace": "g/p"}
    return lint(content, files or {}, project, "a" * 40)


# -- retry -------------------------------------------------------------------------------------
def test_a_reason_joins_an_existing_when_list_and_nothing_else_changes():
    text = fixture("buildroot.gitlab-ci.yml")
    change = plan_retry(text, None, "generate-gitlab-ci-yml", ["api_failure"], 2)
    assert change.after == {"max": 2, "when": ["runner_system_failure",
                                               "stuck_or_timeout_failure", "api_failure"]}
    old, new = text.splitlines(), change.content.splitlines()
    # Only the retry entry's lines differ; the comments and the other jobs are the same lines.
    assert old[:12] == new[:12] and old[17:] == new[15:]
    assert new[12:15] == ["  retry:", "    max: 2",
                          "    when: [runner_system_failure, stuck_or_timeout_failure, "
                          "api_failure]"]
    assert lints(change.content)["valid"] is True
    assert "-      - runner_system_failure" in change.diff


def test_a_job_that_already_retries_on_the_reason_is_left_alone():
    text = fixture("buildroot.gitlab-ci.yml")
    with pytest.raises(Skip, match="already retries on `runner_system_failure`"):
        plan_retry(text, None, "generate-gitlab-ci-yml", ["runner_system_failure"], 2)


def test_parallel_job_names_find_their_yaml_key():
    text = fixture("buildroot.gitlab-ci.yml")
    change = plan_retry(text, None, "generate-gitlab-ci-yml 2/3", ["api_failure"], 2)
    assert change.job == "generate-gitlab-ci-yml"


def test_a_default_retry_is_inherited_and_extended_at_the_job():
    text = fixture("drupal.gitlab-ci.yml")
    with pytest.raises(Skip, match="already retries"):
        plan_retry(text, None, "PHP 8.3 MariaDB 10.6", ["runner_system_failure"], 2)
    change = plan_retry(text, None, "PHP 8.3 MariaDB 10.6", ["data_integrity_failure"], 2)
    assert change.inherited == "default"
    assert change.after["when"] == ["unknown_failure", "api_failure", "stuck_or_timeout_failure",
                                    "runner_system_failure", "scheduler_failure",
                                    "data_integrity_failure"]
    lines = added_lines(text, change.content)
    assert lines[0].startswith("  # Retried when the runner")
    assert lines[1:] == ["  retry:\n", "    max: 2\n",
                         "    when: [unknown_failure, api_failure, stuck_or_timeout_failure, "
                         "runner_system_failure, scheduler_failure, data_integrity_failure]\n"]
    # Right after the job's own last line, before the blank line and the next job.
    at = change.content.index(lines[0])
    assert change.content[:at].endswith('    _TARGET_DB_DRIVER_MODULE: "mysql"\n')
    assert change.content[at:].split("\n\n", 1)[1].startswith("'PHP 8.3 PostgreSQL 16':")


def test_a_mapping_other_jobs_merge_is_not_edited():
    text = fixture("drupal.gitlab-ci.yml")
    with pytest.raises(Skip, match="shared through an anchor"):
        plan_retry(text, None, ".default-stage", ["data_integrity_failure"], 2)


def test_four_space_files_and_block_scalar_anchors_keep_their_layout():
    text = fixture("buildroot-gitlab-ci.yml.in")
    change = plan_retry(text, None, ".check-package_base", ["runner_system_failure"], 2)
    lines = added_lines(text, change.content)
    assert lines[1:] == ["    retry:\n", "        max: 2\n",
                         "        when: [runner_system_failure]\n"]
    assert "*run_make" in change.content and ".run_make: &run_make\n    |\n" in change.content


def test_a_job_from_an_include_is_skipped_with_the_reason():
    main = "include:\n  - local: ci/jobs.yml\n\nlint:\n  script: make lint\n"
    files = {"ci/jobs.yml": "build:\n  script: make\n  retry: 1\n"}
    merged = load_merged(lints(main, files)["merged_yaml"])
    with pytest.raises(Skip, match=r"comes from a file `\.gitlab-ci\.yml` includes"):
        plan_retry(main, merged, "build", ["runner_system_failure"], 2)
    # Without GitLab's merged view, a file with includes is not guessed at.
    with pytest.raises(Skip, match="includes other files"):
        plan_retry(main, None, "lint", ["runner_system_failure"], 2)


def test_a_template_from_an_include_counts_through_extends():
    main = ("include:\n  - local: ci/templates.yml\n\n"
            "build:   # the build\n  extends: .retrying\n  script: make\n")
    files = {"ci/templates.yml": ".retrying:\n  retry: 2\n.slow:\n  timeout: 2h\n"}
    merged = load_merged(lints(main, files)["merged_yaml"])
    with pytest.raises(Skip, match=r"already retries every failure \(`retry: 2`\)"):
        plan_retry(main, merged, "build", ["runner_system_failure"], 2)
    slow = main.replace("extends: .retrying", "extends: [.retrying, .slow]")
    merged = load_merged(lints(slow, files)["merged_yaml"])
    change = plan_timeout(slow, merged, "build", H, 1800, 3 * H)
    assert change.before == "2h" and change.inherited == ".slow" and change.after == "2h 30m"
    assert lints(change.content, files)["valid"] is True


# -- timeout -----------------------------------------------------------------------------------
def test_timeout_is_added_from_the_project_setting_and_bounded():
    text = fixture("drupal.gitlab-ci.yml")
    change = plan_timeout(text, None, "[Commit] PHP 8.3 PostgreSQL 16", H, 1800, 3 * H)
    assert change.before is None and change.after == "1h 30m"
    lines = added_lines(text, change.content)
    assert lines[-1] == "  timeout: 1h 30m\n"
    assert change.content.index(lines[-1]) > change.content.index("  <<: [ *run-on-commit ]")
    capped = plan_timeout(text, None, "[Commit] PHP 8.3 PostgreSQL 16", 2.75 * H, 1800, 3 * H)
    assert capped.after == "3h"
    with pytest.raises(Skip, match="the most devops-agent proposes is 3 h"):
        plan_timeout(text, None, "[Commit] PHP 8.3 PostgreSQL 16", 3 * H, 1800, 3 * H)


def test_an_existing_timeout_is_replaced_in_place_with_its_comment():
    text = "build:\n  script: make\n  timeout: '45 minutes'  # long link step\n  tags: [big]\n"
    change = plan_timeout(text, None, "build", H, 1800, 3 * H)
    assert change.content == ("build:\n  script: make\n  timeout: '1h 15m'  # long link step\n"
                              "  tags: [big]\n")
    assert lints(change.content)["valid"] is True


@pytest.mark.parametrize("text,match", [
    ("build:\n  script: make\n  timeout: 3600\n", "not a duration"),
    ("build: {script: make}\n", "flow style"),
    ("- not\n- a mapping\n", "not a mapping"),
    ("build:\n  script: [unclosed\n", "not valid YAML"),
    ("build:\n  script: make\n", "no job `test`"),
])
def test_what_cannot_be_edited_says_why(text, match):
    with pytest.raises(Skip, match=match):
        if "timeout" in text:
            plan_timeout(text, None, "build", H, 1800, 3 * H)
        else:
            plan_retry(text, None, "test" if "no job" in match else "build",
                       ["runner_system_failure"], 2)


def test_the_edit_reparses_to_the_same_configuration_plus_one_key():
    text = fixture("drupal.gitlab-ci.yml")
    change = plan_timeout(text, None, "PHP 8.3 SQLite 3.45", H, 1800, 3 * H)
    from tasks.ci.pipeline_fix.edit import _plain

    before, after = _plain(parse(text)), _plain(parse(change.content))
    assert after["PHP 8.3 SQLite 3.45"].pop("timeout") == "1h 30m"
    assert after == before
