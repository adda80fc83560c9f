"""The README's handler and command tables, generated from the help records.

`python -m tasks.docs` prints them; tests/test_docs.py fails when README.md is out of date, so
the tables can only change together with the code that they describe.
"""

from __future__ import annotations

from tasks.chatops.commands.help import help_text
from tasks.chatops.core import load_commands
from tasks.handlers import BUILTIN_MODULES, load_handlers

START, END = "<!-- generated:commands -->", "<!-- /generated:commands -->"


def tables(prefix: str = "/devops") -> str:
    registry = load_handlers()
    load_commands()
    lines = ["| Handler | Events | What it does |", "|---|---|---|"]
    for h in registry.handlers.values():
        if h.fn.__module__ not in BUILTIN_MODULES:
            continue  # extra modules (EXTRA_HANDLER_MODULES) are the user's own
        lines.append(f"| `{h.name}` | {', '.join(h.kinds)} | {h.help.description} |")
    return "\n".join(lines) + "\n\n" + help_text(prefix)


def block() -> str:
    return f"{START}\n{tables()}\n{END}"


if __name__ == "__main__":  # pragma: no cover
    print(block())
