"""Facts about a job read from the end of its log: the failing command, the exit code, the lines
after the script stopped, and the tail itself for the error-line finder.

GitLab's runner echoes each script line as `$ cmd`, runs `after_script` and uploads artifacts
after a failure, and ends a failed job with `ERROR: Job failed: exit code N` (Kubernetes
executor: `command terminated with exit code N`). Those markers are the same in every runner
version since 12.x, so reading them is safe where a tool's own wording is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .engine import ScanResult
from .evidence import decode

# How much of the log's end the context layers read: enough for a failing command's output in
# nearly every job, small enough to split into lines on every classification.
TAIL_BYTES = 256 * 1024
MAX_COMMAND_CHARS = 300
# A line is shown and scored by its first this many bytes (minified bundles, binary junk).
MAX_LINE_CHARS = 2000

_EXIT_CODE = re.compile(
    rb"(?:ERROR: Job failed: exit code|command terminated with exit code|"
    rb"ERROR: Job failed: (?:command terminated with )?exit status) (\d{1,3})\b")
# What CI wrappers write before a tool's own line: GitHub Actions' and Jenkins' timestamps, a
# time of day, BuildKit's step and seconds (`#12 0.345`), buildx's plain seconds (`168.4`),
# concurrently's `[0]`. Tools' own markers (`E:`, `npm ERR!`, `[warning]`) come after them, so
# anything that reads a line's start reads it from here (re2 syntax, also used by table.py).
LINE_PREFIX = (
    r"(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?Z? "
    r"|\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?Z?\] "
    r"|\[?\d\d:\d\d:\d\d(?:[.,]\d+)?\]? |#\d+ \d+\.\d+ |\d+\.\d+ |\[\d+\] )*")
_PREFIX = re.compile(LINE_PREFIX)
# Commands that only report or pass on the status of the one before them (`echo $?`, `exit 1`,
# `set +e`), alone on their line: the failing command is the last one that is not one of these.
_TRIVIAL_COMMAND = re.compile(rb"^(?:echo|printf|exit|true|:|set|sleep|date|pwd)(?:\s[^|&;`]*)?$")
# After these, the commands and output belong to GitLab's own steps, not the job's script.
_SCRIPT_OVER = re.compile(
    rb"^(?:Running after[_ ]script|Uploading artifacts for (?:failed|successful) job|"
    rb"Cleaning up (?:project directory|file based variables)|"
    rb"Saving cache for (?:failed|successful) job|"
    rb"ERROR: Job failed)")


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, in the raw log
    text: str


@dataclass
class LogFacts:
    tail: list[Line] = field(default_factory=list)
    # The last `$ cmd` line before the script stopped (None: not a GitLab trace, or too far up).
    command: Line | None = None
    exit_code: int | None = None
    exit_line: Line | None = None
    # The first line of GitLab's own after-failure steps (after_script, artifacts, cleanup).
    script_end: int | None = None
    # The `$ cmd` line after `command` that only reported its status (`$ echo $?`), if any.
    command_end: int | None = None
    # GitLab's runner ended the log with "Job succeeded": whatever it printed, it passed.
    succeeded: bool = False

    @property
    def failing_output(self) -> list[Line]:
        """The tail lines the failing command printed (all of the tail when not known)."""
        start = self.command.number if self.command else 0
        end = min(self.command_end or (1 << 62), self.script_end or (1 << 62))
        return [ln for ln in self.tail if start < ln.number < end]


def find_exit_code(text: bytes) -> int | None:
    """The last exit code GitLab reported in `text`, or None."""
    found = None
    for m in _EXIT_CODE.finditer(text):
        found = int(m.group(1))
    return found


def _lines(block: bytes, line_base: int) -> list[tuple[int, bytes]]:
    return [(line_base + i + 1, text) for i, text in enumerate(block.split(b"\n"))]


def read_facts(scan: ScanResult) -> LogFacts:
    """The LogFacts of one scan (cheap: splits at most TAIL_BYTES plus two blocks into lines)."""
    facts = LogFacts()
    if not scan.tail:
        return facts
    text = b"".join(block for block, _ in scan.tail)
    first = scan.tail[0][1]
    if len(text) > TAIL_BYTES:
        cut = text.find(b"\n", len(text) - TAIL_BYTES)
        if cut >= 0:
            first += text.count(b"\n", 0, cut + 1)
            text = text[cut + 1:]
    numbered = _lines(text, first)
    if numbered and numbered[-1][1] == b"":
        numbered.pop()  # the newline that ends the log opens no line
    for number, raw in numbered:
        stripped = raw.rstrip(b"\r")
        if facts.script_end is None and _SCRIPT_OVER.match(stripped):
            facts.script_end = number
        if stripped.startswith(b"Job succeeded"):
            facts.succeeded = True
        m = _EXIT_CODE.search(stripped)
        if m:
            facts.exit_code = int(m.group(1))
            facts.exit_line = Line(number, decode(stripped[:MAX_LINE_CHARS]))
    facts.tail = [Line(n, decode(raw[:MAX_LINE_CHARS].rstrip(b"\r"))) for n, raw in numbered]
    facts.command, facts.command_end = _last_command(scan, facts.script_end)
    return facts


def strip_prefix(text: str) -> str:
    """The line from where the tool's own output starts (CI wrappers' prefixes removed)."""
    m = _PREFIX.match(text)
    return text[m.end():] if m and m.end() else text


def _last_command(scan: ScanResult, script_end: int | None) -> tuple[Line | None, int | None]:
    """The last `$ cmd` before the script stopped, from the blocks the prefilter marked, and
    the line of the first command after it that only printed or passed on its status.

    Commands that only print or pass on a status (`echo $?`) are skipped unless there is no
    other: the failure happened in the command before them, and its output ends there."""
    best: Line | None = None
    trivial: list[Line] = []
    seen: set[int] = set()
    for block, base in [*scan.command_blocks, *scan.tail]:
        if base in seen:
            continue
        seen.add(base)
        pos = counted = 0
        newlines = base  # newlines before `counted`
        while (at := block.find(b"$ ", pos)) >= 0:
            end = block.find(b"\n", at)
            end = len(block) if end < 0 else end
            pos = end
            if at and block[at - 1] != 0x0A:
                continue  # "$ " inside a line, not GitLab's echo of a script line
            newlines += block.count(b"\n", counted, at)
            counted = at
            number = newlines + 1
            if script_end is not None and number >= script_end:
                break
            cmd = block[at + 2:end].rstrip(b"\r")
            if not cmd[:1].strip():
                continue
            if _TRIVIAL_COMMAND.match(cmd):
                trivial.append(Line(number, decode(cmd)[:MAX_COMMAND_CHARS]))
            elif best is None or number > best.number:
                best = Line(number, decode(cmd)[:MAX_COMMAND_CHARS])
    if best is None:
        return (max(trivial, key=lambda ln: ln.number) if trivial else None), None
    after = [ln.number for ln in trivial if ln.number > best.number]
    return best, min(after) if after else None
