"""Durations as `.gitlab-ci.yml` writes them (`timeout: 1h 30m`) and as the runner prints them.

GitLab parses `timeout:` with ChronicDuration: "1h 30m", "90 minutes", "3 hours and 10
seconds", "1:30:00" and a bare "3600" (seconds) are all durations; an integer in YAML is not
(GitLab wants a string). A job timeout must stay under one month (Project::MAX_BUILD_TIMEOUT).
The runner reports the limit it enforced as a Go duration ("execution took longer than 1h0m0s
seconds").
"""

from __future__ import annotations

import re
from typing import Any

MAX_TIMEOUT = 30 * 86400
DEFAULT_PROJECT_TIMEOUT = 3600  # GitLab's default for a project's "Timeout" setting

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "wks": 604800, "week": 604800, "weeks": 604800,
    "mo": 2592000, "mos": 2592000, "month": 2592000, "months": 2592000,
}
_TOKEN = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_GO = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: Any) -> float | None:
    """Seconds for a duration GitLab accepts, None for anything else (an int included)."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if not text:
        return None
    if re.fullmatch(r"\d+(:\d{1,2}){1,2}", text):
        clock = 0
        for part in text.split(":"):
            clock = clock * 60 + int(part)
        return float(clock)
    text = re.sub(r"\band\b|,", " ", text)
    tokens = _TOKEN.findall(text)
    if not tokens or _TOKEN.sub("", text).strip():
        return None
    total = 0.0
    for number, unit in tokens:
        if unit and unit not in _UNITS:
            return None
        total += float(number) * _UNITS.get(unit, 1)
    return total


def parse_go_duration(text: str) -> float | None:
    """Seconds for the runner's Go duration ("1h0m0s", "90m0s", "45s"), else None."""
    m = _GO.match(text.strip().rstrip("."))
    if not m or not any(m.groups()):
        return None
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mins * 60 + s


def format_duration(seconds: float) -> str:
    """The shortest GitLab form: 5400 -> "1h 30m", 3600 -> "1h", 90 -> "1m 30s"."""
    total = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return " ".join(parts) or "0s"


def words(seconds: float) -> str:
    """For people: "1 h 30 min", "45 min"."""
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    out = []
    if h:
        out.append(f"{h} h")
    if m:
        out.append(f"{m} min")
    if s and not h:
        out.append(f"{s} s")
    return " ".join(out) or "0 s"
