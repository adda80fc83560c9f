"""Failure signatures: what makes two failures "the same" across jobs, branches and projects.

A signature is the deciding rule (or the inferred category and tool) plus the first evidence
line with everything run-specific taken out: timestamps, numbers, hashes, UUIDs, paths, URLs,
temp names. `devops-agent rules suggest` clusters on the same normal form, so a person who
corrects one failure teaches the classifier every failure with the same signature.
"""

from __future__ import annotations

import hashlib
import re

MAX_CHARS = 200

_SUBSTITUTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d:\d\d(?:[.,]\d+)?\b"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
     "<uuid>"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>)]+", re.I), "<url>"),
    (re.compile(r"(?:[A-Za-z]:\\|\\\\)[^\s'\":]+"), "<path>"),
    (re.compile(r"(?<![\w.])(?:\.{0,2}/)?(?:[\w.@+-]+/)+[\w.@+-]+"), "<path>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}\b", re.I), "<hex>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)*"), "<n>"),
    (re.compile(r"\s+"), " "),
)
# Quoted names: '...', "...", `...`, and typographic quotes (U+2018 ... U+2019).
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|" "\u2018[^\u2019]*\u2019")


def normalise(text: str, *, quoted: bool = False) -> str:
    """`text` without what changes from run to run; with `quoted`, also quoted names (for
    clustering: "'foo' is not defined" and "'bar' is not defined" are one kind of error)."""
    s = text.strip()
    for pattern, replacement in _SUBSTITUTIONS:
        s = pattern.sub(replacement, s)
    if quoted:
        s = _QUOTED.sub("<q>", s)
    return s.strip().lower()[:MAX_CHARS]


def signature(key: str, line: str | None) -> str:
    """A short stable id for (deciding rule or category/tool, normalised first evidence line)."""
    return signature_of(key, normalise(line or ""))


def signature_of(key: str, normalised: str) -> str:
    """`signature` for a line already normalised."""
    raw = f"{key}\0{normalised}"
    return hashlib.sha1(raw.encode("utf-8", "replace")).hexdigest()[:16]
