"""The README's generated tables must match the help records (regenerate: python -m tasks.docs)."""

from pathlib import Path

from tasks.docs import END, START, block

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_command_tables_are_current():
    text = README.read_text()
    current = text[text.index(START): text.index(END) + len(END)]
    assert current == block(), "README.md is stale: paste the output of `python -m tasks.docs`"


def test_every_command_and_handler_has_help():
    from tasks.chatops.core import load_commands
    from tasks.handlers import load_handlers

    for h in load_handlers().handlers.values():
        assert h.help.description
    for c in load_commands().values():
        assert c.help.usage and c.help.description
