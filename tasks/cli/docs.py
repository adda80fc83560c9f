"""Generated documentation: the README's handler, command and corpus tables, and the corpus'
SOURCES.md, all made from the code and data they describe.

`python -m tasks.cli.docs --write` rewrites them; tests/test_docs.py fails when any is out of date,
so they can only change together with what they describe.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasks.chatops.commands.help import help_text
from tasks.chatops.core import load_commands
from tasks.ci.rules import load_table
from tasks.ci.rules.classifier import Classifier
from tasks.ci.rules.corpus import evaluate, layered_classifier, load_manifest
from tasks.ci.rules.table import CATEGORIES
from tasks.platform.handlers import BUILTIN_MODULES, load_handlers

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CORPUS = ROOT / "fixtures" / "logs"
SOURCES = CORPUS / "SOURCES.md"
START, END = "<!-- generated:commands -->", "<!-- /generated:commands -->"
CORPUS_START, CORPUS_END = "<!-- generated:corpus -->", "<!-- /generated:corpus -->"


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


def corpus_report() -> object:
    return evaluate(load_manifest(CORPUS, CATEGORIES), layered_classifier(Classifier(load_table())))


def corpus_block(report: object) -> str:
    return f"{CORPUS_START}\n{report.table()}\n{CORPUS_END}"  # type: ignore[attr-defined]


def sources() -> str:
    entries = load_manifest(CORPUS, CATEGORIES)
    lines = ["# The corpus: where each log came from", "",
             "Generated from the manifests (`python -m tasks.cli.docs --write`); the format and the",
             "rules for adding a log are in README.md here. Each log is an excerpt of real CI",
             "output published by a public project (whitespace and lines as posted; what was",
             "trimmed is in the note), or printed by running a public project's own tools.", "",
             "| log | outcome | category | rule | source | note |", "|---|---|---|---|---|---|"]
    for e in sorted(entries, key=lambda e: e.name):
        note = e.note.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {e.name} | {e.outcome} | {e.category} | {e.rule or ''} | "
                     f"{e.source.replace('|', '%7C')} | {note} |")
    return "\n".join(lines) + "\n"


def _replace(text: str, start: str, end: str, block_text: str) -> str:
    i, j = text.index(start), text.index(end) + len(end)
    return text[:i] + block_text + text[j:]


def write() -> None:
    text = README.read_text()
    text = _replace(text, START, END, block())
    text = _replace(text, CORPUS_START, CORPUS_END, corpus_block(corpus_report()))
    README.write_text(text)
    SOURCES.write_text(sources())


if __name__ == "__main__":  # pragma: no cover
    if "--write" in sys.argv:
        write()
    else:
        print(block())
