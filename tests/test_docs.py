"""Generated documentation must match what it describes (regenerate: python -m tasks.cli.docs --write)."""

from tasks.cli.docs import CORPUS_END, CORPUS_START, END, README, SOURCES, START, block, corpus_block, sources

STALE = "stale: run `python -m tasks.cli.docs --write`"


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start): text.index(end) + len(end)]


def test_readme_command_tables_are_current():
    assert _between(README.read_text(), START, END) == block(), "README.md is " + STALE


def test_readme_corpus_table_is_current(corpus_report):
    assert _between(README.read_text(), CORPUS_START, CORPUS_END) == corpus_block(corpus_report), \
        "README.md's corpus table is " + STALE


def test_sources_list_every_log():
    assert SOURCES.read_text() == sources(), "fixtures/logs/SOURCES.md is " + STALE


def test_every_command_and_handler_has_help():
    from tasks.chatops.core import load_commands
    from tasks.platform.handlers import load_handlers

    for h in load_handlers().handlers.values():
        assert h.help.description
    for c in load_commands().values():
        assert c.help.usage and c.help.description
