"""A matched log line as text a person reads: decoded, trimmed around the match, its captures.

Logs are bytes in no promised encoding, and a "line" may be a megabyte of minified bundle;
evidence is shown in comments, chat and the terminal, so it is decoded leniently (never an
error), stripped of carriage returns and NULs, and cut to TEXT_CAP characters around the match.
The context layers (facts.py) decode the log's last lines the same way.
"""

from __future__ import annotations

from typing import Any

# Characters kept of one line of evidence, and of one capture.
TEXT_CAP = 400


def decode(raw: bytes) -> str:
    """Log bytes as text: UTF-8 where it is, U+FFFD where not, no CR or NUL."""
    return raw.decode("utf-8", "replace").replace("\r", " ").replace("\x00", "")


def display(line: bytes, at: int) -> str:
    """The line as a person reads it: trimmed, and around the match when the line is very long."""
    if len(line) > TEXT_CAP:
        start = max(0, min(at - 80, len(line) - TEXT_CAP))
        piece = line[start : start + TEXT_CAP]
        more = start + TEXT_CAP < len(line)
        text = ("…" if start else "") + decode(piece) + ("…" if more else "")
    else:
        text = decode(line)
    return text.rstrip()


def captures(match: Any) -> dict[str, str]:
    """A re2 match's named groups that took part, as trimmed text."""
    out = {}
    for name, value in match.groupdict().items():
        if value is None:
            continue
        key = name.decode() if isinstance(name, bytes) else name
        out[key] = decode(value.strip())[:TEXT_CAP]
    return out
