"""Loading and validating rules files: every problem at once, with file:line, rule and field;
hostile YAML gets a clear error and never a traceback."""

from __future__ import annotations

import pytest

from tasks.ci.rules import RulesError, check_files, load_table
from tasks.ci.rules.loading import MAX_FILE_BYTES

from .conftest import write_rules


def problems(tmp_path, text, **kw):
    return check_files(write_rules(tmp_path, text), include_default=kw.get("include_default", False))


def test_every_problem_is_reported_with_line_rule_and_field(tmp_path):
    found = problems(
        tmp_path,
        """rules:
  - id: a
    category: nope
    match: {log: 'x('}
    reaction: explode
  - id: b
    category: test_failure
    match: {}
    colour: red
  - id: a
    category: unknown
    match: {exit_code: 1}
  - id: c
    category: unknown
    description: "in {file}"
    match: {log: 'x', failure_reason: not_a_reason, exit_code: [one]}
    reaction: {kind: label}
""",
    )
    got = {(p.line, p.rule, p.field) for p in found}
    assert (3, "a", "category") in got
    assert (4, "a", "match.log") in got
    assert (5, "a", "reaction") in got
    assert (9, "b", "colour") in got  # unknown key
    assert (8, "b", "match") in got  # no condition
    assert (10, "a", "id") in got  # duplicate id
    assert (15, "c", "description") in got  # placeholder is not a capture
    assert (16, "c", "match.failure_reason") in got
    assert (16, "c", "match.exit_code") in got
    assert (17, "c", "reaction.labels") in got
    assert all(p.file.endswith("rules.yaml") for p in found)
    text = str(RulesError(found))
    assert "rules.yaml:3: rule a: category: unknown category 'nope'" in text


def test_rule_without_match_or_id(tmp_path):
    found = problems(tmp_path, "rules:\n  - category: unknown\n")
    fields = {p.field for p in found}
    assert {"id", "match"} <= fields


def test_pattern_matching_empty_line_is_refused(tmp_path):
    found = problems(tmp_path, "rules:\n  - id: e\n    category: unknown\n    match: {log: 'x*'}\n")
    assert [p.field for p in found] == ["match.log"] and "empty line" in found[0].message


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "empty"),
        ("- just\n- a list\n", "mapping"),
        ("just a string\n", "mapping"),
        ("rules: 12\n", "list of rules"),
        ("rules:\n  - 12\n", "must be a mapping"),
        ("other: 1\n", "unknown key"),
        ("version: 2\nrules: []\n", "version 1"),
        ("rules: [\n", "not valid YAML"),
        ("rules:\n  - id: x\n\tcategory: y\n", "not valid YAML"),
        ("rules:\n  - id: x\n    category: unknown\n    match: {log: !!python/object:os.system 'x'}\n",
         "match.log"),
        ("rules:\n  - id: [1, 2]\n    category: unknown\n    match: {exit_code: 1}\n", "id"),
        ("rules:\n  - id: w\n    category: unknown\n    warning_lines: yes please\n"
         "    match: {exit_code: 1}\n", "warning_lines"),
        ("rules:\n  - id: x\n    category: unknown\n    priority: high\n    match: {exit_code: 1}\n",
         "priority"),
        ("rules:\n  - id: x\n    category: unknown\n    match: {exit_code: 1}\n"
         "    reaction: {kind: retry, max_retries: 99}\n", "max_retries"),
        ("rules:\n  - id: x\n    category: unknown\n    match: {exit_code: 1}\n    enabled: maybe\n",
         "enabled"),
    ],
)
def test_malformed_files_give_clear_problems(tmp_path, text, needle):
    found = problems(tmp_path, text)
    assert found, "expected a problem"
    assert any(needle in str(p) for p in found), [str(p) for p in found]


def test_billion_laughs_is_refused_without_expanding(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("rules: [*j]")
    found = problems(tmp_path, "\n".join(lines) + "\n")
    assert any("aliases" in p.message for p in found)


def test_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"rules:\n" + b"#" * (MAX_FILE_BYTES + 10) + b"\n")
    found = check_files(path, include_default=False)
    assert len(found) == 1 and "limit" in found[0].message


def test_deep_nesting_and_bad_encoding(tmp_path):
    assert problems(tmp_path, "rules: " + "[" * 5000 + "]" * 5000 + "\n")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"rules: []\n# caf\xe9\n")
    assert "UTF-8" in str(check_files(path, include_default=False)[0])


def test_missing_file_is_a_problem_not_a_traceback(tmp_path):
    found = check_files(tmp_path / "nope.yaml", include_default=False)
    assert len(found) == 1 and "cannot read" in found[0].message


def test_user_file_overrides_and_disables_by_id(tmp_path):
    user = write_rules(
        tmp_path,
        """rules:
  - id: docker-rate-limit
    category: docker_rate_limit
    priority: 1
    description: "Use the mirror, see wiki/ci#mirror"
    match: {log: 'toomanyrequests'}
    reaction: {kind: retry, max_retries: 1}
  - id: oom-killed
    enabled: false
  - id: team-special
    category: flaky_test
    priority: 2
    match: {log: 'TEAM-FLAKE-(?P<n>\\d+)', job_name: 'e2e-*'}
""",
    )
    table = load_table(user)
    ids = [r.id for r in table.rules]
    assert ids.count("docker-rate-limit") == 1 and "oom-killed" not in ids
    rule = table.rule("docker-rate-limit")
    assert rule.reaction.kind == "retry" and rule.source.startswith(str(user))
    assert (table.classify([b"toomanyrequests: slow down\n"]).description
            == "Use the mirror, see wiki/ci#mirror")
    assert table.classify([b"TEAM-FLAKE-7\n"], job_name="e2e-chrome").rule_id == "team-special"
    assert table.classify([b"TEAM-FLAKE-7\n"], job_name="unit").rule_id is None


def test_default_table_is_valid_and_user_errors_name_their_file(tmp_path):
    assert check_files(None) == []
    user = write_rules(tmp_path, "rules:\n  - id: x\n    category: bad\n    match: {exit_code: 1}\n")
    found = check_files(user)
    assert [(p.file, p.line, p.rule, p.field) for p in found] == [(str(user), 3, "x", "category")]


def test_load_table_raises_one_error_listing_everything(tmp_path):
    user = write_rules(tmp_path, "rules:\n  - id: x\n    category: bad\n    match: {log: '('}\n")
    with pytest.raises(RulesError) as exc:
        load_table(user)
    assert len(exc.value.problems) == 2
    assert str(exc.value).startswith("invalid rules table (2 problems):")


def test_description_fallbacks(tmp_path):
    user = write_rules(
        tmp_path,
        """rules:
  - id: x
    category: unknown
    description: "killed {proc|a process} ({sig})"
    match: {log: ['Killed (?P<proc>\\w+)', 'signal (?P<sig>\\d+)', 'plain kill']}
""",
    )
    table = load_table(user, include_default=False)
    assert table.classify([b"Killed cc1plus\nsignal 9\n"]).description == "killed cc1plus (9)"
    assert table.classify([b"plain kill\n"]).description == "killed a process (?)"
    # {x.__class__} style fields are not format specs: they are plain text.
    user2 = write_rules(tmp_path, "rules:\n  - id: y\n    category: unknown\n"
                                  "    description: 'a {0} {x.y}'\n    match: {exit_code: 3}\n", "r2.yaml")
    assert load_table(user2, include_default=False).classify([], exit_code=3).description == "a {0} {x.y}"


def test_pure_python_yaml_path_is_as_strict(tmp_path, monkeypatch):
    # Without libyaml the composer is PyYAML's own; aliases and deep nesting still give problems.
    from tasks.config import yamlfile  # the one YAML reader, which rules files go through

    monkeypatch.setattr(yamlfile, "_CLoader", None)
    assert any("aliases" in p.message for p in problems(tmp_path, "a: &a [1]\nrules: *a\n"))
    assert problems(tmp_path, "rules: " + "[" * 3000 + "]" * 3000 + "\n")
    assert check_files(None) == []


def test_the_worked_example_in_the_docs_is_valid(tmp_path):
    from .conftest import ROOT

    doc = (ROOT / "README.md").read_text()
    start = doc.index("```yaml\nversion: 1\n") + len("```yaml\n")
    example = write_rules(tmp_path, doc[start : doc.index("```", start)])
    assert check_files(example) == []
    table = load_table(example)
    log = b" FAIL  src/components/Button.test.ts > Button > renders snapshot\n"
    result = table.classify([log], stage="test", job_name="unit-web", failure_reason="script_failure",
                            exit_code=1)
    assert result.rule_id == "vitest-snapshot-mismatch"
    assert result.description == "Snapshot changed in src/components/Button.test.ts"
