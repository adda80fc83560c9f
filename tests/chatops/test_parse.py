"""Table-driven: which notes carry which commands (negatives included, as Prow's hold_test)."""

import pytest

from tasks.gitlab.note_commands import MAX_COMMANDS_PER_NOTE, parse_commands, parse_note

CASES = [
    ("plain command", "/devops deploy staging", [("deploy", ("staging",))]),
    ("case-insensitive", "/DevOps Deploy staging", [("deploy", ("staging",))]),
    ("after text on its own line", "LGTM\n\n/devops retry", [("retry", ())]),
    ("two commands", "/devops lock production db work\n/devops status",
     [("lock", ("production", "db", "work")), ("status", ())]),
    ("quoted reason", '/devops deploy production --force "hotfix for INC-1"',
     [("deploy", ("production", "--force", "hotfix for INC-1"))]),
    ("only the prefix", "/devops", [("", ())]),
    ("leading spaces up to three", "   /devops help", [("help", ())]),
    ("trailing spaces", "/devops status   ", [("status", ())]),
    ("glued word is another command", "/devops deployall", [("deployall", ())]),
    ("prefix glued to a word", "/devopsdeploy staging", []),
    ("mid-sentence", "please /devops deploy staging now", []),
    ("quoted line", "> /devops deploy production", []),
    ("quoted with spaces", "  > /devops deploy production", []),
    ("fenced code block", "```\n/devops deploy production\n```", []),
    ("tilde fence", "~~~sh\n/devops deploy production\n~~~", []),
    ("indented code", "    /devops deploy production", []),
    ("html comment", "<!-- /devops deploy production -->", []),
    ("multi-line html comment", "<!--\n/devops deploy production\n-->", []),
    ("after a closed fence", "```\nx\n```\n/devops status", [("status", ())]),
    ("GitLab quick action is not ours", "/deploy staging", []),
    ("multi-line blockquote", ">>>\n/devops deploy staging\n>>>", []),
    ("unclosed multi-line blockquote", "text\n>>>\n/devops deploy staging", []),
    ("after a blockquote", ">>>\nquoted\n>>>\n/devops status", [("status", ())]),
    ("html blockquote", "<blockquote>\n/devops deploy staging\n</blockquote>", []),
    ("html blockquote with attributes", '<BlockQuote class="x">\n/devops deploy staging\n</BLOCKQUOTE>', []),
    ("html pre", "<pre>\n/devops deploy production\n</pre>", []),
    ("html code", "<code>\n/devops deploy production</code>", []),
    ("html details", "<details><summary>old</summary>\n/devops rollback production\n</details>", []),
    ("unclosed html pre", "<pre>\n/devops deploy production", []),
    ("after html pre", "<pre>x</pre>\n/devops status", [("status", ())]),
    ("another prefix", "/devopsx deploy", []),
    ("empty", "", []),
]


@pytest.mark.parametrize("body,expected", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_parse(body, expected):
    assert [(c.name, c.args) for c in parse_commands(body)] == expected


def test_configurable_prefix():
    assert [c.name for c in parse_commands("/ops deploy x\n/devops deploy y", "/ops")] == ["deploy"]


def test_unbalanced_quote_is_reported_not_raised():
    [cmd] = parse_commands('/devops lock production "unterminated')
    assert cmd.error and "parse" in cmd.error


def test_hostile_notes_are_bounded():
    body = "/devops status\n" * 1000 + "x" * 1_000_000
    assert len(parse_commands(body)) == MAX_COMMANDS_PER_NOTE
    assert parse_commands("```\n" + "/devops deploy production\n" * 10000) == []
    assert parse_commands("\x00/devops \x00 deploy\x00") == []


def test_commands_past_the_cap_are_counted_not_run():
    parsed = parse_note("/devops status\n" * (MAX_COMMANDS_PER_NOTE + 3))
    assert len(parsed.commands) == MAX_COMMANDS_PER_NOTE and parsed.dropped == 3


@pytest.mark.parametrize("body", ["<pre " * 20000, "<!--" * 25000, "<code" * 20000,
                                  "<details x" * 9000, ">>>\n" * 20001, "```\n" * 20001])
def test_hostile_markup_hides_what_follows_it(body):
    # Unclosed quoting markup hides the rest of the note (a lazy regex over these took seconds
    # per note; the scanner is one pass).
    assert parse_note(body + "\n/devops status").commands == []
