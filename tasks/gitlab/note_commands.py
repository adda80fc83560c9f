"""Find commands in a note: `/devops <command> [args]`, anchored at the start of a line.

Like Prow's trigger plugin, but for every form GitLab's Markdown has for "this is quoted or
code, not an order": `> ` lines, `>>>` multi-line blockquotes, fenced (``` and ~~~) and indented
code blocks, and the raw HTML GitLab renders (`<blockquote>`, `<pre>`, `<code>`, `<details>`,
`<!-- -->`, ...). Their content is dropped before matching, so quoting or documenting a
command never runs it. At most MAX_COMMANDS_PER_NOTE commands are taken from one note; the
caller is told how many were left, so the reply can say so.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

MAX_NOTE_CHARS = 100_000
MAX_COMMANDS_PER_NOTE = 5

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BLOCKQUOTE_FENCE = re.compile(r"^ {0,3}>>>")
# Elements whose content is quoted or code; an unclosed one hides everything after it.
_QUOTING_TAGS = ("blockquote", "pre", "code", "details", "q", "kbd", "samp", "tt", "var",
                 "textarea", "script", "style")
_OPENING = re.compile(r"<(!--|" + "|".join(_QUOTING_TAGS) + r")(?=[\s>/])", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    name: str  # lower-cased command word ("deploy"), "" when only the prefix was written
    args: tuple[str, ...]
    line: str  # the line as written, for quoting in the reply
    error: str | None = None  # unbalanced quotes and the like


@dataclass(frozen=True)
class Parsed:
    commands: list[Command] = field(default_factory=list)
    dropped: int = 0  # commands past MAX_COMMANDS_PER_NOTE, not run


def _without_quoting_html(body: str) -> str:
    """`body` with HTML comments and quoting elements cut out, in one linear pass (a regex with
    lazy `.*?` would be quadratic on a note full of unclosed tags)."""
    lowered = body.lower()
    out: list[str] = []
    pos = 0
    while (m := _OPENING.search(lowered, pos)) is not None:
        out.append(body[pos:m.start()])
        tag = m.group(1)
        if tag == "!--":
            end = lowered.find("-->", m.end())
            pos = len(body) if end < 0 else end + 3
        else:
            close = lowered.find("</" + tag, m.end())
            if close < 0:
                pos = len(body)
            else:
                gt = lowered.find(">", close)
                pos = len(body) if gt < 0 else gt + 1
        out.append(" ")
    out.append(body[pos:])
    return "".join(out)


def visible_lines(body: str) -> list[str]:
    """The note's lines minus code blocks, quotes and quoting HTML."""
    body = _without_quoting_html(body[:MAX_NOTE_CHARS].replace("\r\n", "\n"))
    out: list[str] = []
    fence: str | None = None
    in_quote = False
    for line in body.split("\n"):
        if in_quote:
            if _BLOCKQUOTE_FENCE.match(line):
                in_quote = False
            continue
        m = _FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        if _BLOCKQUOTE_FENCE.match(line):
            in_quote = True
            continue
        if line.startswith("    ") or line.startswith("\t") or line.lstrip().startswith(">"):
            continue
        out.append(line)
    return out


def parse_note(body: str, prefix: str = "/devops") -> Parsed:
    """Commands in `body`, in order, at most MAX_COMMANDS_PER_NOTE, and how many were left."""
    anchored = re.compile(r"^\s{0,3}" + re.escape(prefix) + r"(?:\s+(.*))?$", re.IGNORECASE)
    commands: list[Command] = []
    dropped = 0
    for line in visible_lines(body):
        m = anchored.match(line.rstrip())
        if not m:
            continue
        if len(commands) >= MAX_COMMANDS_PER_NOTE:
            dropped += 1
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
    return Parsed(commands, dropped)


def parse_commands(body: str, prefix: str = "/devops") -> list[Command]:
    """The commands of `body` (see parse_note), without the count of those left out."""
    return parse_note(body, prefix).commands
