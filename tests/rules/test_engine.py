"""The streaming scan: cleaning, chunking, evidence, both prefilter backends, and safety."""

from __future__ import annotations

import random
import time

import pytest

from tasks.ci.rules import RulesError, load_table
from tasks.ci.rules.cleaning import strip_ansi
from tasks.ci.rules.engine import EVIDENCE_CAP

from .conftest import BACKENDS, write_rules

RULES = """
rules:
  - id: boom
    category: compile_error
    description: "boom in {file|somewhere}"
    match:
      log: ['(?P<file>\\S+\\.c):\\d+: error: boom']
  - id: anchored
    category: test_failure
    priority: 200
    match:
      log: ['^FAILED (?P<test>\\S+)$']
"""


@pytest.fixture(params=BACKENDS)
def table(request, tmp_path):
    return load_table(write_rules(tmp_path, RULES), include_default=False,
                      use_hyperscan=request.param == "hyperscan")


def test_ansi_colours_inside_the_match_are_removed(table):
    log = b"noise\n\x1b[1m\x1b[31msrc/a.c\x1b[0m:3: \x1b[31;1merror:\x1b[0m boom\n"
    result = table.classify([log])
    assert result.rule_id == "boom"
    assert result.evidence[0].line == 2
    assert result.evidence[0].text == "src/a.c:3: error: boom"
    assert result.description == "boom in src/a.c"


def test_strip_ansi_keeps_newlines():
    assert strip_ansi(b"a\x1b[0m\nb\x1b\nc\x1b[\nd") .count(b"\n") == 3


def test_gitlab_sections_are_reported_and_stripped(table):
    log = (
        b"\x1b[0Ksection_start:1700000000:prepare_script\r\x1b[0KPreparing\n"
        b"\x1b[0Ksection_end:1700000001:prepare_script\r\x1b[0K\n"
        b"\x1b[0Ksection_start:1700000002:step_script\r\x1b[0K\x1b[32;1m$ make\x1b[0;m\n"
        b"FAILED tests/x.py::t\n"
        b"src/a.c:3: error: boom\n"
        b"\x1b[0Ksection_end:1700000009:step_script\r\x1b[0K\n"
        b"src/b.c:4: error: boom\n"
    )
    result = table.classify([log])
    assert [(e.line, e.section) for e in result.evidence] == [(5, "step_script"), (7, None)]
    # The section marker is gone from the text the anchored rule sees.
    anchored = table.classify([log.replace(b"src/a.c:3: error: boom\n", b"")])
    assert anchored.rule_id == "boom" and "anchored" in anchored.also_matched


def test_ff_timestamps_prefix_does_not_break_anchors(table):
    log = (
        b"2024-05-14T08:27:38.123456Z 00O $ pytest\n"
        b"2024-05-14T08:27:39.000001Z 01O FAILED tests/test_x.py::test_y\n"
    )
    result = table.classify([log])
    assert result.rule_id == "anchored"
    assert result.evidence[0].captures == {"test": "tests/test_x.py::test_y"}
    assert result.evidence[0].line == 2


def test_line_split_across_tiny_chunks(table):
    log = b"x" * 50 + b"\nsrc/a.c:3: error: boom\n" + b"y\n" * 10
    whole = table.classify([log])
    bytewise = table.classify(log[i : i + 1] for i in range(len(log)))
    assert whole.to_dict() == bytewise.to_dict()
    assert bytewise.evidence[0].line == 2


def test_evidence_is_capped_but_lines_are_counted(table):
    log = b"".join(b"src/f%d.c:1: error: boom\n" % i for i in range(40))
    result = table.classify([log])
    assert len(result.evidence) == EVIDENCE_CAP
    assert [e.line for e in result.evidence] == [1, 2, 3, 4, 5]
    assert result.matched_lines == 40


def test_same_line_is_one_hit_and_multiline_matches_do_not_count(tmp_path):
    rules = write_rules(
        tmp_path,
        "rules:\n  - id: r\n    category: unknown\n    match: {log: ['a\\s+b', 'a']}\n",
    )
    for hs in (False, True):
        table = load_table(rules, include_default=False, use_hyperscan=hs)
        result = table.classify([b"a a a\nb\n"])
        assert result.matched_lines == 1  # 'a\s+b' across the newline is not a line match
        assert [e.line for e in result.evidence] == [1]


def test_long_lines_are_truncated_around_the_match(table):
    log = b"q" * 300_000 + b" src/a.c:3: error: boom " + b"z" * 300_000 + b"\n"
    result = table.classify([log])
    text = result.evidence[0].text
    assert "src/a.c:3: error: boom" in text and len(text) < 500


def test_no_newline_binary_junk_is_bounded(table):
    junk = bytes(range(256)) * 20_000  # 5 MB, few newlines, NULs everywhere
    result = table.classify(junk[i : i + 65536] for i in range(0, len(junk), 65536))
    assert result.category == "unknown"


def test_empty_and_missing_logs(table):
    assert table.classify([]).category == "unknown"
    assert table.classify(None).category == "unknown"
    assert table.classify([b"", b""]).category == "unknown"


def test_file_objects_are_read_in_chunks(table, tmp_path):
    path = tmp_path / "job.log"
    path.write_bytes(b"hello\nsrc/a.c:3: error: boom\n")
    with open(path, "rb") as fh:
        assert table.classify(fh).rule_id == "boom"


def test_backreference_is_refused_at_load(tmp_path):
    rules = write_rules(tmp_path,
                        "rules:\n  - id: br\n    category: unknown\n    match: {log: ['(a+)\\1']}\n")
    with pytest.raises(RulesError) as exc:
        load_table(rules, include_default=False)
    text = str(exc.value)
    assert "rule br" in text and "match.log" in text and "backreferences" in text


@pytest.mark.parametrize("pattern", ["(?=x)a", "a(?!b)", "(?<=a)b"])
def test_lookaround_is_refused_at_load(tmp_path, pattern):
    rules = write_rules(tmp_path,
                        f"rules:\n  - id: la\n    category: unknown\n    match: {{log: ['{pattern}']}}\n")
    with pytest.raises(RulesError, match=r"rule la: match\.log: bad regular expression"):
        load_table(rules, include_default=False)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", BACKENDS)
def test_catastrophic_pattern_returns_promptly(tmp_path, backend):
    # (a+)+$ takes Python's re seconds on 26 characters and forever on these lines.
    rules = write_rules(tmp_path,
                        "rules:\n  - id: cat\n    category: unknown\n    match: {log: ['(a+)+$']}\n")
    table = load_table(rules, include_default=False, use_hyperscan=backend == "hyperscan")
    log = (b"a" * 5000 + b"!\n") * 200
    start = time.perf_counter()
    result = table.classify([log])
    assert time.perf_counter() - start < 5
    assert result.category == "unknown"
    assert table.classify([b"aaaa\n"]).rule_id == "cat"


def test_pattern_hyperscan_rejects_falls_back_to_re2(tmp_path):
    # (?U) (ungreedy) is valid re2 but Hyperscan refuses it even in prefilter mode.
    rules = write_rules(
        tmp_path,
        "rules:\n  - id: u\n    category: unknown\n    match: {log: ['(?U)x(?P<n>\\d+)y']}\n"
        "  - id: plain\n    category: unknown\n    match: {log: ['plain']}\n",
    )
    table = load_table(rules, include_default=False)
    if "hyperscan" in BACKENDS:
        assert table.backend == "hyperscan+re2"
    result = table.classify([b"nothing\nx123y plain\n"])
    assert result.rule_id == "u" and result.evidence[0].captures == {"n": "123"}
    assert result.also_matched == ["plain"]


def test_exclusions(tmp_path):
    rules = write_rules(
        tmp_path,
        """
rules:
  - id: err
    category: compile_error
    match:
      log: ['error: (?P<m>.+)']
      stage: ['build*']
    exclude:
      lines: ['deprecated']
      log: ['Build succeeded']
      job_name: ['lint-*']
""",
    )
    table = load_table(rules, include_default=False)
    log = b"error: deprecated thing\nerror: real one\n"
    r = table.classify([log], stage="build-linux")
    assert r.rule_id == "err" and [e.line for e in r.evidence] == [2]
    assert table.classify([log], stage="test").rule_id is None
    assert table.classify([log], stage="build", job_name="lint-x").rule_id is None
    assert table.classify([log + b"Build succeeded\n"], stage="build").rule_id is None
    assert table.classify([b"error: deprecated only\n"], stage="build").rule_id is None


def test_failure_reason_aliases_and_unknown_values(tmp_path):
    rules = write_rules(
        tmp_path,
        """
rules:
  - id: stuck
    category: job_timeout
    match: {failure_reason: stuck_or_timeout_failure}
  - id: unk
    category: unknown
    priority: 500
    match: {failure_reason: unknown_failure}
""",
    )
    table = load_table(rules, include_default=False)
    assert table.classify([], failure_reason="stuck_pending_no_matching_runners").rule_id == "stuck"
    assert table.classify([], failure_reason="no_updates_running").rule_id == "stuck"
    assert table.classify([], failure_reason="some_future_reason").rule_id == "unk"
    assert table.classify([]).rule_id is None  # not known is not unknown_failure


def test_threads_can_share_a_table(table):
    from concurrent.futures import ThreadPoolExecutor

    logs = [b"noise\n" * 1000 + b"src/%d.c:1: error: boom\n" % i for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda log: table.classify([log]), logs))
    assert [r.evidence[0].captures["file"] for r in results] == [f"src/{i}.c" for i in range(16)]


def test_evidence_from_several_patterns_keeps_the_earliest_lines(tmp_path):
    rules = write_rules(
        tmp_path,
        "rules:\n  - id: two\n    category: unknown\n    match: {log: ['late (?P<n>\\d+)', 'early']}\n",
    )
    log = b"".join(b"late %d\n" % i for i in range(10)) + b"early\n"
    log = b"early\n" + log
    for hs in (False, True):
        result = load_table(rules, include_default=False, use_hyperscan=hs).classify([log])
        assert [e.line for e in result.evidence] == [1, 2, 3, 4, 5]
        assert result.matched_lines == 12


@pytest.mark.parametrize("step", [700_001, 1 << 20, 3 << 20])
def test_big_chunks_cut_mid_line_keep_line_numbers(table, step):
    lines = [b"noise line %d with some text\n" % i for i in range(200_000)]
    lines[123_456] = b"src/x.c:9: error: boom\n"
    lines[199_998] = b"src/y.c:9: error: boom\n"
    log = b"".join(lines)
    result = table.classify(log[i : i + step] for i in range(0, len(log), step))
    assert [e.line for e in result.evidence] == [123_457, 199_999]
    assert result.to_dict() == table.classify([log]).to_dict()


@pytest.mark.skipif("hyperscan" not in BACKENDS, reason="needs the hyperscan wheel")
def test_compiled_database_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEVOPS_AGENT_CACHE_DIR", str(cache))
    rules = write_rules(
        tmp_path,
        "rules:\n  - id: u\n    category: unknown\n    match: {log: ['(?U)x\\d+y']}\n"
        "  - id: p\n    category: unknown\n    match: {log: ['plain']}\n",
    )
    first = load_table(rules, include_default=False)
    (db_file,) = cache.glob("hs-*.db")
    second = load_table(rules, include_default=False)  # from the cache, rejects remembered
    assert second.backend == first.backend == "hyperscan+re2"
    # The literal analysis comes back from the cache too, unchanged.
    hs_first, hs_second = first.engine.prefilter.hs, second.engine.prefilter.hs
    assert (hs_second.owner, hs_second.literal_patterns, hs_second.rejected) == \
        (hs_first.owner, hs_first.literal_patterns, hs_first.rejected)
    assert second.classify([b"x12y plain\n"]).rule_id == "u"
    db_file.write_bytes(db_file.read_bytes()[:-10])  # truncated: ignored, compiled again
    assert load_table(rules, include_default=False).classify([b"plain\n"]).rule_id == "p"
    monkeypatch.setenv("DEVOPS_AGENT_CACHE_DIR", "")
    assert load_table(rules, include_default=False).classify([b"plain\n"]).rule_id == "p"


def test_read_chunks_reads_ahead_and_reports_errors(tmp_path):
    import io

    from tasks.ci.rules.reading import read_chunks

    data = b"".join(b"line %d\n" % i for i in range(300_000))
    assert b"".join(read_chunks(io.BytesIO(data), size=65536)) == data

    class Broken(io.RawIOBase):
        def readinto(self, b):
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        list(read_chunks(Broken()))
    # Stopping early does not hang on the helper thread.
    gen = read_chunks(io.BytesIO(data), size=1024)
    next(gen)
    gen.close()


def test_backends_agree_on_non_ascii_text(tmp_path):
    # `.` is one byte for both engines, and literal UTF-8 in a pattern matches as written.
    rules = write_rules(
        tmp_path,
        "rules:\n  - id: one\n    category: unknown\n    match: {log: ['a.b']}\n"
        "  - id: lit\n    category: unknown\n    match: {log: ['✖ (?P<n>\\d+) problems']}\n",
    )
    results = []
    for hs in BACKENDS:
        table = load_table(rules, include_default=False, use_hyperscan=hs == "hyperscan")
        results.append(
            (
                table.classify(["a✖b\n".encode()]).rule_id,
                table.classify(["x ✖ 12 problems\n".encode()]).evidence[0].captures,
            )
        )
    assert all(r == (None, {"n": "12"}) for r in results)


# -- the block reader for regular files and the cheaper cleaning --------------------------------

ESCAPES = [
    b"\x1b[31m",
    b"\x1b[0m",
    b"\x1b[0K",
    b"\x1b[01;31m\x1b[K",
    b"\x1b]0;title\x07",
    b"\x1b(B",
    b"\x1b",
    b"\x1b[0Ksection_start:1700000000:build_step\r\x1b[0K",
    b"\x1b[0Ksection_end:1700000000:build_step\r\x1b[0K",
    b"\x1b[0Ksection_start:17:opts[collapsed=true]\r",
    b"\x1b[0Ksection_start:17:odd[a\x1b[31mb]\r",  # an ESC inside a marker's options
    b"\x1b[0Ksection_end:17:opts\r",
]


def _sprinkled(seed: int, size: int, p: float = 0.02) -> bytes:
    import random

    rng = random.Random(seed)  # noqa: S311 - seeded, for reproducible inputs
    words = [b"src/a.c:3:", b" error:", b" boom", b"FAILED", b" t_1", b"\n", b"noise", b" ", b"\r"]
    out = bytearray()
    while len(out) < size:
        if rng.random() < p:
            out += rng.choice(ESCAPES)
        out += rng.choice(words)
    return bytes(out)


@pytest.mark.parametrize("seed", range(6))
def test_quick_clean_is_clean_block_without_offsets(seed):
    from tasks.ci.rules.cleaning import clean_block, exact_events, quick_clean

    raw = _sprinkled(seed, 200_000, p=0.05 * (seed % 3))
    text, events, parts = quick_clean(raw)
    exact_text, exact = clean_block(raw)
    assert text == exact_text
    assert [e[1:] for e in events] == [e[1:] for e in exact]
    assert (exact_events(parts) if parts is not None else []) == exact


def _scan_both_ways(table, path, data):
    from tasks.ci.rules.reading import FileChunks, read_chunks

    chunks = read_chunks(str(path))
    assert isinstance(chunks, FileChunks) and chunks.blocks() is not None
    via_path = table.classify(read_chunks(str(path))).to_dict()
    with open(path, "rb") as fh:
        via_file = table.classify(fh).to_dict()
    via_chunks = table.classify(data[i : i + 4096] for i in range(0, len(data), 4096)).to_dict()
    assert via_path == via_file == via_chunks
    return via_path


@pytest.mark.parametrize("seed", range(3))
def test_regular_files_read_in_blocks_agree_with_streamed_chunks(table, tmp_path, seed):
    # Blocks of a regular file are cut at newlines with a seek back; every way in must agree
    # on hits, line numbers, sections and captures.
    data = _sprinkled(seed, 3_000_000) + b"\nsrc/z.c:7: \x1b[31merror:\x1b[0m boom\nlast line, no newline"
    path = tmp_path / "job.log"
    path.write_bytes(data)
    result = _scan_both_ways(table, path, data)
    assert result["rule"] == "boom"


def test_regular_file_with_very_long_lines(table, tmp_path):
    data = b"x" * 2_500_000 + b" src/a.c:1: error: boom\n" + b"y" * 1_500_000 + b"\nsrc/b.c:2: error: boom"
    path = tmp_path / "long.log"
    path.write_bytes(data)
    result = _scan_both_ways(table, path, data)
    assert [e["line"] for e in result["evidence"]] == [1, 3]


def test_engine_line_count_from_the_block_reader(tmp_path):
    from tasks.ci.rules.reading import read_chunks

    table = load_table(write_rules(tmp_path, RULES), include_default=False)
    data = b"".join(b"line %d\n" % i for i in range(300_000)) + b"tail"
    path = tmp_path / "n.log"
    path.write_bytes(data)
    assert table.engine.scan(read_chunks(str(path))).lines == 300_001
    assert table.engine.scan([data]).lines == 300_001


def test_backends_agree_on_non_ascii_patterns_with_classes_and_alternations(tmp_path):
    # Case-sensitive non-ASCII patterns run in Hyperscan too: both engines match bytes, so a
    # class or alternation of UTF-8 text must find exactly what re2 finds, on any bytes.
    patterns = ["[✖✗] (?P<n>\\d+)", "(?:✘|X) \\[ERROR\\] (?P<m>.+)", "● \\S.* › \\S",
                "\\b\\d+:\\d+ +✖ +\\S.*?\\s{2,}(?P<r>[a-z][\\w-]+)\\s*$", "│ [1-9]\\d* Blocking"]
    rules = write_rules(tmp_path, "rules:\n" + "".join(
        f"  - id: r{i}\n    category: unknown\n    match: {{log: ['{p}']}}\n"
        for i, p in enumerate(patterns)))
    tables = [load_table(rules, include_default=False, use_hyperscan=hs == "hyperscan")
              for hs in BACKENDS]
    pieces = ["✖", "✗", "✘", "●", "›", "│", " ", "  ", "X", "[ERROR]", "12", "3:4", "a-rule", "\n",
              "é", "\x9c", "É", "Blocking", "x"]
    rnd = random.Random(11)  # noqa: S311 - seeded, for reproducible inputs
    for _ in range(400):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 30))).encode()
        raw = text + bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 4)))
        seen = [(t.classify([raw]).rule_id, t.classify([raw]).also_matched) for t in tables]
        assert all(s == seen[0] for s in seen), raw


def test_warning_level_lines_are_not_evidence(tmp_path):
    # What a step reports at warning level it went on from: not a failure, for any rule.
    rules = write_rules(
        tmp_path,
        """
rules:
  - id: timeout
    category: network_error
    match:
      log: ['connect ETIMEDOUT']
  - id: analyzer
    category: lint_failure
    warning_lines: true
    match:
      log: ['\\(\\S+\\.dart, line \\d+, col \\d+\\)']
""",
    )
    table = load_table(rules, include_default=False)
    warned = [
        b"[warning]connect ETIMEDOUT 13.107.42.16:443",  # GitHub Actions, as downloaded
        b"2023-02-09T20:11:49.9484027Z ##[warning]connect ETIMEDOUT 1.2.3.4:443",
        b"::warning file=a.js,line=1::connect ETIMEDOUT 1.2.3.4:443",
        b"Warning: connect ETIMEDOUT 1.2.3.4:443",  # the web view's rendering
        b"[2023-02-08T07:29:15.204Z] [warning]connect ETIMEDOUT 1.2.3.4:443",  # under Jenkins
        b"#5 0.989 ##[warning]connect ETIMEDOUT 1.2.3.4:443",  # inside a BuildKit step
        b"##vso[task.logissue type=warning]connect ETIMEDOUT 1.2.3.4:443",
    ]
    for line in warned:
        assert table.classify([line + b"\n"]).rule_id is None, line
    # The same words at error level, a warning quoted inside an error line, or a tool's own
    # warning level (Maven's, npm's: tools print real causes there) still count.
    for line in (b"npm ERR! connect ETIMEDOUT 1.2.3.4:443",
                 b"##[error]connect ETIMEDOUT 1.2.3.4:443",
                 b"Error: failed after [warning]connect ETIMEDOUT 1.2.3.4:443",
                 b"[WARNING] Could not transfer metadata: connect ETIMEDOUT 1.2.3.4:443",
                 b"npm WARN tar connect ETIMEDOUT 1.2.3.4:443"):
        assert table.classify([line + b"\n"]).rule_id == "timeout", line
    both = table.classify([warned[0] + b"\nnpm ERR! connect ETIMEDOUT 1.2.3.4:443\n"])
    assert both.rule_id == "timeout" and [e.line for e in both.evidence] == [2]
    # A rule whose findings are warnings by design opts in.
    finding = b"[warning] Unused import (lib/main.dart, line 3, col 8)\n"
    assert table.classify([finding]).rule_id == "analyzer"
