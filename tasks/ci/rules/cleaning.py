"""A log block as rules see it: terminal escapes, GitLab section markers and timestamps removed.

GitLab job logs are what the job's terminal got: ANSI colours and erase-line codes, GitLab's
`section_start:`/`section_end:` markers around each step (collapsible in the web view), and with
FF_TIMESTAMPS a timestamp before every line. Rule patterns are written against the text a
person reads, so each block is cleaned before matching. Newlines are never removed, so line
numbers stay those of the raw log, and the section markers are reported as events (offset,
start|end, name) so evidence can name the job step it is in (`section_at`).

The C cleaner (_fastclean.c) does the common case without holding the GIL; where it was not
built, or for an escape only the Python path handles, the regular expressions below do it all,
with identical results (tests/rules/test_fastclean.py compares them).
"""

from __future__ import annotations

import re
from itertools import accumulate, compress
from typing import cast

try:  # the C cleaner (tasks/ci/rules/_fastclean.c): same results, without holding the GIL
    from ._fastclean import clean as _fast_clean
except ImportError:  # built without a C compiler: the Python path below does it all
    _fast_clean = None

Event = tuple[int, str, str]  # (offset in the cleaned block, "start" | "end", section name)

_CSI = re.compile(rb"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]")
# OSC (ESC ] ... BEL or ESC \\), two-byte escapes, and a lone ESC: never across a newline.
_OTHER_ESC = re.compile(rb"\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[\x20-\x2f]*[\x30-\x7e]?")
# GitLab's section markers ("ESC[0Ksection_start:<ts>:<name>[opts]\r") and CSI sequences in one
# alternation, so a single C-level re.split both removes them and reports the markers.
_ESCAPES = re.compile(
    rb"\x1b\[0Ksection_(start|end):\d+:([A-Za-z0-9_.\-]+)(?:\[[^\]\r\n]*\])?\r?"
    rb"|\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
)
TIMESTAMP_PREFIX = re.compile(
    rb"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z [0-9a-fA-F]{2}[OE]\+? ?"
)


def strip_ansi(block: bytes) -> bytes:
    """Drop terminal escape sequences; newlines are never part of one, so line numbers hold.

    CSI sequences (colours, erase-line) are nearly all of them and go in one C-level re.sub
    (~1.7 GB/s: the regex engine jumps between ESC bytes); anything else (charset switches,
    OSC titles) is rare and takes a second, general pass only when an ESC is left.
    """
    if b"\x1b" not in block:
        return block
    block = _CSI.sub(b"", block)
    if b"\x1b" in block:
        block = _OTHER_ESC.sub(b"", block)
    return block


def clean_block(raw: bytes, timestamps: bool = False) -> tuple[bytes, list[Event]]:
    """The block as rules see it, and its (offset in the cleaned block, start|end, name) events.

    FF_TIMESTAMPS prefixes go first (they sit before any colour code); then one re.split drops
    escapes and section markers together. Newlines are never removed.
    """
    if timestamps:
        raw = TIMESTAMP_PREFIX.sub(b"", raw)
    if b"\x1b" not in raw:
        return raw, []
    if _fast_clean is not None:
        fast = _fast_clean(raw)
        if fast is not None:  # None: an escape only the Python path handles
            return fast[0], fast[1]
    parts = _ESCAPES.split(raw)
    texts = parts[0::3]
    kinds = parts[1::3]
    events: list[Event] = []
    if any(kinds):
        ends = list(accumulate(map(len, texts)))
        # compress() picks the few marker positions out of thousands of colour codes in C.
        events = [
            (ends[i], kinds[i].decode(), parts[3 * i + 2].decode("ascii", "replace"))
            for i in compress(range(len(kinds)), kinds)
        ]
    block = b"".join(texts)
    if b"\x1b" in block:  # rare non-CSI escapes; offsets above may drift by a few bytes
        block = _OTHER_ESC.sub(b"", block)
    return block, events


def quick_clean(raw: bytes | memoryview) -> tuple[bytes, list[Event], list[bytes] | None]:
    """`clean_block(raw)` without the markers' offsets: (text, events with offset -1, parts).

    The offsets (a running sum over thousands of pieces) are only needed for evidence, in the
    few blocks a pattern hits: `exact_events(parts)` makes them from the parts kept here
    (None when there are no markers, so nothing needs to be kept). `raw` may be a memoryview
    of the start of a bytes object (the block reader's); the text returned is always bytes.
    """
    if isinstance(raw, memoryview):
        whole = cast(bytes, raw.obj)  # the block reader's views are always of bytes
        if whole.find(b"\x1b", 0, len(raw)) < 0:
            return bytes(raw), [], None
    elif b"\x1b" not in raw:
        return raw, [], None
    if _fast_clean is not None:
        fast = _fast_clean(raw)
        if fast is not None:  # exact offsets already, so no parts to keep
            return fast[0], fast[1], None
    parts = _ESCAPES.split(raw)
    kinds = parts[1::3]
    events: list[Event] = []
    if any(kinds):
        events = [
            (-1, kinds[i].decode(), parts[3 * i + 2].decode("ascii", "replace"))
            for i in compress(range(len(kinds)), kinds)
        ]
    block = b"".join(parts[0::3])
    if b"\x1b" in block:  # rare non-CSI escapes, as in clean_block
        block = _OTHER_ESC.sub(b"", block)
    return block, events, (parts if events else None)


def exact_events(parts: list[bytes]) -> list[Event]:
    """The events clean_block makes from the same split (same offsets, same order)."""
    texts = parts[0::3]
    kinds = parts[1::3]
    ends = list(accumulate(map(len, texts)))
    return [
        (ends[i], kinds[i].decode(), parts[3 * i + 2].decode("ascii", "replace"))
        for i in compress(range(len(kinds)), kinds)
    ]


def apply_section(stack: list[str], kind: str, name: str) -> None:
    """Open or close a section on the stack of open ones (innermost last)."""
    if kind == "start":
        stack.append(name)
    elif name in stack:  # close it and anything left open inside it
        del stack[len(stack) - 1 - stack[::-1].index(name) :]


def section_at(stack: list[str], events: list[Event], line_end: int) -> str | None:
    """The innermost open section for a line: markers before its end (same line included)."""
    current = list(stack)
    for offset, kind, name in events:
        if offset > line_end:
            break
        apply_section(current, kind, name)
    return current[-1] if current else None
