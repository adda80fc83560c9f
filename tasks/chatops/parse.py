"""Find commands in a note: `/devops <command> [args]`, anchored at the start of a line.

Like Prow's trigger plugin: quoted lines (`> ...`), fenced and indented code blocks and HTML
comments are dropped before matching, so quoting or documenting a command never runs it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

MAX_NOTE_CHARS = 100_000
MAX_COMMANDS_PER_NOTE = 5

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HTML_COMMENT = re.compile(r"<!--.*?(-->|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Command:
    name: str  # lower-cased command word ("deploy"), "" when only the prefix was written
    args: tuple[str, ...]
    line: str  # the line as written, for quoting in the reply
    error: str | None = None  # unbalanced quotes and the like


def visible_lines(body: str) -> list[str]:
    """The note's lines minus code blocks, quotes and HTML comments."""
    body = _HTML_COMMENT.sub("", body[:MAX_NOTE_CHARS].replace("\r\n", "\n"))
    out, fence = [], None
    for line in body.split("\n"):
        m = _FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        if line.startswith("    ") or line.startswith("\t") or line.lstrip().startswith(">"):
            continue
        out.append(line)
    return out


def parse_commands(body: str, prefix: str = "/devops") -> list[Command]:
    """Commands in `body`, in order, at most MAX_COMMANDS_PER_NOTE."""
    anchored = re.compile(r"^\s{0,3}" + re.escape(prefix) + r"(?:\s+(.*))?$", re.IGNORECASE)
    commands = []
    for line in visible_lines(body):
        m = anchored.match(line.rstrip())
        if not m:
            continue
        rest = (m.group(1) or "").strip()
        try:
            words = shlex.split(rest)
            error = None
        except ValueError as exc:
            words, error = rest.split(), f"cannot parse the arguments: {exc}"
        name = words[0].lower() if words else ""
        commands.append(Command(name=name, args=tuple(words[1:]), line=line.strip()[:300],
                                error=error))
        if len(commands) >= MAX_COMMANDS_PER_NOTE:
            break
    return commands
