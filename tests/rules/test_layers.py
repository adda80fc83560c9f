"""The layers around the rules: facts read from the log's end, the context tier, the error-line
finder, the layered verdict and signatures. Logs here are shaped as GitLab's runner writes a
trace (colour codes, section markers, `$ cmd` echoes, the final `ERROR: Job failed` line)."""

from __future__ import annotations

import random

import pytest

from tasks.ci.rules.classifier import Classifier, Correction
from tasks.ci.rules.context import command_info, infer, name_category
from tasks.ci.rules.errorlines import error_lines
from tasks.ci.rules.facts import read_facts
from tasks.ci.rules.signature import normalise, signature
from tests.support.logs import fixture_log


def trace(*script: str, after: tuple[str, ...] = ("echo cleanup",), exit_code: int | None = 1,
          timestamps: bool = False) -> bytes:
    """A GitLab job trace running `script` (commands start with '$ ', the rest is output)."""
    out = [b"Running with gitlab-runner 17.4.0 (b92ee590)",
           b"\x1b[0Ksection_start:1700000000:prepare_executor\r\x1b[0K\x1b[0K\x1b[36;1mPreparing "
           b"the \"docker\" executor\x1b[0;m",
           b"\x1b[0Ksection_end:1700000001:prepare_executor\r\x1b[0K",
           b"\x1b[0Ksection_start:1700000002:step_script\r\x1b[0K\x1b[0K\x1b[36;1mExecuting "
           b"\"step_script\" stage of the job script\x1b[0;m"]
    for line in script:
        out.append(b"\x1b[32;1m" + line.encode() + b"\x1b[0;m" if line.startswith("$ ")
                   else line.encode())
    out.append(b"\x1b[0Ksection_end:1700000010:step_script\r\x1b[0K")
    if after:
        out.append(b"\x1b[0Ksection_start:1700000011:after_script\r\x1b[0K\x1b[0K\x1b[36;1m"
                   b"Running after_script\x1b[0;m")
        out += [b"\x1b[32;1m$ " + a.encode() + b"\x1b[0;m" for a in after]
        out.append(b"\x1b[0Ksection_end:1700000012:after_script\r\x1b[0K")
    out.append(b"\x1b[0Ksection_start:1700000013:cleanup_file_variables\r\x1b[0K\x1b[0K\x1b[36;1m"
               b"Cleaning up project directory and file based variables\x1b[0;m")
    out.append(b"\x1b[0Ksection_end:1700000014:cleanup_file_variables\r\x1b[0K")
    if exit_code is not None:
        out.append(b"\x1b[31;1mERROR: Job failed: exit code %d\x1b[0;m" % exit_code)
    if timestamps:
        out = [b"2024-05-14T08:27:%02d.%06dZ 01O " % (i % 60, i) + line for i, line in enumerate(out)]
    return b"\n".join(out) + b"\n"


# The layers' mechanics are tested over a small table of our own, so that they do not depend
# on what the default table happens to match (tests/rules/test_corpus.py scores that).
TABLE = """
version: 1
rules:
  - id: pytest-failed
    category: test_failure
    match: {log: ['=+ .*\\b\\d+ failed\\b']}
    reaction: fix
  - id: system-failure
    category: runner_system_failure
    priority: 10
    match: {log: ['ERROR: Job failed \\(system failure\\): (?P<reason>.+)']}
    reaction: {kind: retry, max_retries: 2}
  - id: runner-reason
    category: runner_system_failure
    priority: 90
    match: {failure_reason: [runner_system_failure]}
    reaction: {kind: retry, max_retries: 2}
  - id: sigkill
    category: oom_killed
    priority: 92
    match: {exit_code: [137]}
    reaction: {kind: retry, max_retries: 1}
"""


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    from tasks.ci.rules import load_table

    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(TABLE)
    return load_table(path, include_default=False)


@pytest.fixture(scope="module")
def classifier(small_table):
    return Classifier(small_table)


# -- facts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("timestamps", [False, True])
def test_facts_find_the_failing_command_not_the_after_script(default_table, timestamps):
    log = trace("$ npm ci", "added 812 packages in 9s", "$ npm run lint", "> app@1.0.0 lint",
                "> eslint src", "  3:1  error  'x' is assigned a value but never used",
                timestamps=timestamps)
    facts = read_facts(default_table.scan([log]))
    assert facts.command is not None and facts.command.text == "npm run lint"
    assert facts.exit_code == 1
    assert [ln.text.strip() for ln in facts.failing_output][:2] == ["> app@1.0.0 lint", "> eslint src"]
    lines = log.split(b"\n")
    assert b"npm run lint" in lines[facts.command.number - 1]  # 1-based raw log line numbers


def test_facts_kubernetes_executor_exit_code_and_no_commands(default_table):
    facts = read_facts(default_table.scan([b"some output\ncommand terminated with exit code 137\n"]))
    assert facts.exit_code == 137 and facts.command is None
    assert read_facts(default_table.scan([])).tail == []


def test_a_command_that_only_reports_the_status_is_not_the_failing_one(default_table):
    log = trace("$ yarn run test:ci", "Tests:       3 failed, 1416 passed, 1419 total",
                "error Command failed with exit code 1.", "$ echo $?", "1", "$ exit 1")
    facts = read_facts(default_table.scan([log]))
    assert facts.command is not None and facts.command.text == "yarn run test:ci"
    # Its output ends where the status report starts: the bare "1" is not a failing line.
    assert [ln.text for ln in facts.failing_output][-1] == "error Command failed with exit code 1."
    assert "1" not in [ln.text for ln in error_lines(facts)]
    chained = read_facts(default_table.scan([trace("$ echo start && make -j4", "make: *** [all] Error 2")]))
    assert chained.command.text == "echo start && make -j4"
    only = read_facts(default_table.scan([trace("$ echo $?", "1")]))
    assert only.command is not None and only.command.text == "echo $?"


def test_the_command_far_above_the_tail_is_still_found(default_table):
    # 3 MB of test output after the command: more than the blocks kept as the tail.
    noise = "\n".join(f"test_{i} ... ok" for i in range(200_000))
    log = trace("$ python -m pytest -q", noise, "FAILED test_x.py::test_y - assert 1 == 2")
    facts = read_facts(default_table.scan([log[i:i + 65536] for i in range(0, len(log), 65536)]))
    assert facts.command is not None and facts.command.text == "python -m pytest -q"
    assert facts.exit_code == 1


# -- the context tier -------------------------------------------------------------------------

@pytest.mark.parametrize("command, category, tool", [
    ("npm run lint", "lint_failure", "npm run lint"),
    ("yarn test --ci", "test_failure", "yarn test"),
    ("python -m pytest -x tests", "test_failure", "pytest"),
    ("FOO=1 poetry run mypy src", "lint_failure", "mypy"),
    ("go test ./...", "test_failure", "go test"),
    ("go vet ./...", "lint_failure", "go vet"),
    ("cargo +nightly fmt -- --check", "lint_failure", "cargo fmt"),
    ("docker build -t registry/app:$CI_COMMIT_SHA .", "compile_error", "docker build"),
    ("/kaniko/executor --context $CI_PROJECT_DIR", "compile_error", "/kaniko/executor"),
    ("terraform plan -out plan.cache", "compile_error", "terraform plan"),
    ("./gradlew test", "test_failure", "gradlew test"),
    ("bash ci/run-tests.sh", "test_failure", "run-tests"),
    ("tox -e lint", "lint_failure", "tox -e lint"),
    ("npm audit --audit-level=high", "security_scan_failure", "npm audit"),
    ("/analyzer run", "security_scan_failure", "analyzer"),
    ("bundle exec rspec spec/models", "test_failure", "rspec"),
    ("pip install -r requirements.txt", "dependency_resolution", "pip install"),
    ("yarn", "dependency_resolution", "yarn"),
    ("timeout 600 make -j4", "compile_error", "make"),
    ("sh -c 'npx eslint . && npm test'", "lint_failure", "eslint"),
])
def test_command_tells_the_tool(command, category, tool):
    info = command_info(command)
    assert info is not None and (info.category, info.tool) == (category, tool)


@pytest.mark.parametrize("command", ["kubectl apply -f k8s/", "docker run --rm img ./x",
                                     "echo done", "helm upgrade --install app chart/", ""])
def test_commands_that_say_nothing(command):
    info = command_info(command)
    assert info is None or info.category is None


@pytest.mark.parametrize("name, category", [
    ("unit-tests", "test_failure"), ("rspec 1/4", "test_failure"), ("lint:eslint", "lint_failure"),
    ("secret_detection", "security_scan_failure"), ("semgrep-sast", "security_scan_failure"),
    ("gemnasium-dependency_scanning", "security_scan_failure"), ("build:image", "compile_error"),
    ("code_quality", "lint_failure"), ("deploy", None), ("review", None), (None, None),
])
def test_names_point_at_categories(name, category):
    assert name_category(name) == category


def test_confidence_grows_with_agreeing_signals(default_table):
    facts = read_facts(default_table.scan([trace("$ npx eslint src", "  1:1  error  bad")]))
    assert infer(facts, job_name="lint", stage="test", markers=1).confidence == "high"
    assert infer(facts, job_name=None, stage=None, markers=1).confidence == "medium"
    assert infer(facts, job_name="build", stage="build", markers=0).confidence == "low"
    scripted = read_facts(default_table.scan([trace("$ npm run check-all", "oops")]))
    only_stage = infer(scripted, job_name="unit", stage="test", markers=0)
    assert only_stage.category == "test_failure" and only_stage.confidence == "low"
    assert "job `unit` only" in only_stage.reason


# -- the error-line finder ----------------------------------------------------------------------

def test_error_lines_skip_noise_and_keep_log_order(default_table):
    log = trace("$ make", "gcc -c a.c", "a.c: In function 'main':",
                "a.c:3:5: error: 'y' undeclared (first use in this function)",
                "compilation finished with 0 errors in other units",
                "npm ERR! A complete log of this run can be found in: /root/.npm/x.log",
                "make: *** [Makefile:4: a.o] Error 1")
    facts = read_facts(default_table.scan([log]))
    texts = [ln.text for ln in error_lines(facts)]
    assert texts[0].startswith("a.c:3:5: error")
    assert any("make: ***" in t for t in texts)
    assert not any("0 errors" in t or "complete log" in t or "Job failed" in t for t in texts)
    numbers = [ln.number for ln in error_lines(facts)]
    assert numbers == sorted(numbers)


def test_error_lines_always_show_something(default_table):
    facts = read_facts(default_table.scan([trace("$ ./deploy.sh", "deploying", "done?")]))
    assert [ln.text for ln in error_lines(facts)] == ["deploying", "done?"]
    assert error_lines(read_facts(default_table.scan([]))) == []


def test_error_lines_are_bounded_and_deduplicated(default_table):
    many = [f"src/f{i}.ts(1,1): error TS2304: Cannot find name 'x'." for i in range(40)]
    facts = read_facts(default_table.scan([trace("$ tsc -p .", *many)]))
    assert len(error_lines(facts)) == 1  # same message modulo numbers


def test_error_lines_read_past_ci_prefixes_and_npm_boilerplate(default_table):
    log = (b" => ERROR [deps 1/1] RUN npm ci\n"
           b"#0 0.988 npm ERR! code EUSAGE\n"
           b"#0 0.992 npm ERR!\n"
           b"#0 0.993 npm ERR! The `npm ci` command can only install with an existing package-lock.json\n"
           b"#0 0.994 npm ERR!     at Object.run (/usr/lib/node_modules/npm/lib/ci.js:12:3)\n"
           b"#0 0.995 npm ERR! A complete log of this run can be found in:\n")
    texts = [ln.text for ln in error_lines(read_facts(default_table.scan([log])))]
    assert "#0 0.988 npm ERR! code EUSAGE" in texts
    assert any("can only install" in t for t in texts)
    assert not any(t.endswith("npm ERR!") or "complete log" in t or " at Object" in t for t in texts)


def test_error_lines_take_the_list_under_a_failure_header(default_table):
    log = b"\n".join([
        b"The following build commands failed:",
        b"    CompileSwift normal x86_64",
        b"    CompileSwiftSources normal x86_64 com.apple.xcode.tools.swift.compiler",
        b"(2 failures)",
        b"some later note",
    ]) + b"\n"
    texts = [ln.text.strip() for ln in error_lines(read_facts(default_table.scan([log])))]
    assert texts[:4] == ["The following build commands failed:", "CompileSwift normal x86_64",
                         "CompileSwiftSources normal x86_64 com.apple.xcode.tools.swift.compiler",
                         "(2 failures)"]


def test_error_lines_name_the_package_of_an_advisory(default_table):
    log = (b"Name: activerecord\nVersion: 3.2.18\nAdvisory: OSVDB-90072\nCriticality: Medium\n"
           b"URL: http://osvdb.org/show/osvdb/90072\nTitle: attr_protected bypass\n"
           b"Solution: upgrade to >= 3.2.12\n")
    texts = [ln.text for ln in error_lines(read_facts(default_table.scan([log])))]
    assert texts[:2] == ["Name: activerecord", "Version: 3.2.18"]
    # The same "Key: value" shape without an advisory field is only a banner.
    banner = b"Name: my-service\nVersion: 1.2.3\nBuilt: today\nerror: deploy failed\n"
    found = error_lines(read_facts(default_table.scan([banner])))
    assert [ln.text for ln in found] == ["error: deploy failed"]


def test_error_lines_prefer_the_signal_over_the_options_of_a_command(default_table):
    log = (b"python train.py --timeout 120 --fail-fast\n 31%|###  | 63/204\n"
           b"Process finished with exit code 137 (interrupted by signal 9:SIGKILL)\n")
    texts = [ln.text for ln in error_lines(read_facts(default_table.scan([log])))]
    assert texts == ["Process finished with exit code 137 (interrupted by signal 9:SIGKILL)"]


# -- the layered verdict ----------------------------------------------------------------------

def test_no_rule_but_the_failing_command_tells(classifier):
    log = trace("$ npm ci", "added 3 packages", "$ npm run lint", "> eslint .",
                "/builds/acme/web/src/app.js", "  12:5  error  Unexpected console statement  no-console")
    v = classifier.classify([log], job_name="lint", stage="test")
    assert (v.layer, v.category, v.rule_id) == ("context", "lint_failure", None)
    assert v.confidence in ("high", "medium")
    assert "`$ npm run lint`" in v.reason and "job `lint`" in v.reason
    assert any("no-console" in ln.text for ln in v.error_lines)
    assert not v.may_retry


def test_gitlab_failure_reason_decides_first(classifier):
    log = fixture_log("runner-system-failure.log").read_bytes() + b"\n=== 1 failed in 2s ===\n"
    v = classifier.classify([log], failure_reason="runner_system_failure")
    assert (v.layer, v.category, v.rule_id) == ("gitlab", "runner_system_failure", "system-failure")
    assert "pytest-failed" in v.also_matched
    assert "failure reason `runner_system_failure`" in v.reason and "matched line" in v.reason
    bare = classifier.classify([], failure_reason="job_execution_timeout")
    assert (bare.layer, bare.category) == ("gitlab", "job_timeout")


def test_exit_code_from_the_log_reaches_the_rules(classifier):
    v = classifier.classify([trace("$ ./run-big-job", "working...", exit_code=137)])
    assert v.exit_code == 137
    assert (v.layer, v.rule_id, v.category) == ("gitlab", "sigkill", "oom_killed")
    assert "exit code 137" in v.reason


def test_rules_layer_names_the_rule_and_line(classifier):
    with open(fixture_log("pytest-failure.log"), "rb") as fh:
        v = classifier.classify(fh)
    assert v.layer == "rules" and v.confidence == "high" and v.rule_id == "pytest-failed"
    assert v.reason == f"matched rule `pytest-failed` on line {v.evidence[0].line}"


def test_unknown_still_points_at_lines(classifier):
    v = classifier.classify([trace("$ ./custom-step", "step 1", "the widget exploded: cannot continue")])
    assert (v.category, v.layer) == ("unknown", "none")
    assert [ln.text for ln in v.error_lines] == ["the widget exploded: cannot continue"]
    assert "names no known tool" in v.reason


def test_a_job_that_succeeded_is_not_inferred_to_have_failed(classifier):
    log = trace("$ npm install", "npm WARN deprecated inflight@1.0.6", "added 3 packages",
                after=(), exit_code=None)
    log = log.replace(b"\x1b[0Ksection_end:1700000014",
                      b"Job succeeded\n\x1b[0Ksection_end:1700000014")
    v = classifier.classify([log + b"Job succeeded\n"], job_name="install", stage="build")
    assert (v.category, v.layer) == ("unknown", "none") and "Job succeeded" in v.reason


class RecordingCorrections:
    def __init__(self, taught):
        self.taught, self.asked = taught, []

    def correction(self, sig):
        self.asked.append(sig)
        return self.taught.get(sig)


def test_a_correction_wins_for_the_same_signature(small_table):
    log = [trace("$ ./custom-step", "the widget exploded: cannot continue")]
    first = Classifier(small_table).classify(log)
    taught = RecordingCorrections({first.signature: Correction("network_error", "alice", "acme/shop!7")})
    again = Classifier(small_table, taught).classify(log)
    assert (again.category, again.layer, again.original_category) == ("network_error", "learned", "unknown")
    assert "@alice" in again.reason and "acme/shop!7" in again.reason
    assert not again.may_retry  # a correction is a category, never a reason to retry


@pytest.mark.parametrize("log", [
    b"\x00\x01\x02" * 100_000,  # binary
    b"x" * (3 << 20),  # one 3 MB line, no newline
    b"\xff\xfe invalid utf-8 \xc3\x28 error: broken\n" * 1000,
    b"$ " * 100_000,
    b"\n" * 100_000,
])
def test_hostile_logs_classify_without_crashing(classifier, log):
    v = classifier.classify([log])
    assert v.category in ("unknown", "compile_error", "lint_failure", "test_failure")
    assert all(len(ln.text) <= 2000 for ln in v.error_lines)


def test_random_garbage_never_crashes(classifier):
    rnd = random.Random(3)  # noqa: S311 - seeded, for reproducible inputs
    pieces = [b"$ ", b"\n", b"\x1b[31m", b"error: ", b"ERROR: Job failed: exit code ", b"137",
              b"\r", b"section_start:1:x\r", b"\x1b[0K", b"FAILED", b"\xff", b" "]
    for _ in range(300):
        log = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 200)))
        classifier.classify([log])


# -- signatures --------------------------------------------------------------------------------

def test_signatures_ignore_what_changes_between_runs():
    a = "2024-05-14T08:27:39Z /builds/a/b/src/x.c:3:1: error: expected ';' (job 4711, 0xdeadbeef)"
    b = "2025-01-01T00:00:00Z /home/ci/other/x.c:98:7: error: expected ';' (job 12, 0xcafe)"
    assert normalise(a) == normalise(b)
    assert signature("rule:gcc", a) == signature("rule:gcc", b) != signature("rule:clang", a)
    assert normalise("'foo' is not defined", quoted=True) == normalise("'bar' is not defined", quoted=True)
