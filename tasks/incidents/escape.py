"""Alert text made safe for GitLab Markdown: everything an alert says comes from outside."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote, urlsplit

SHOWN_TEXT = 300          # characters of a summary or description in the alert table
_MD = re.compile(r"([\\`*_\[\]()!|~<>{}])")
# GitLab references and mentions (`@all`, `#12`, `!3`, `~label`, `%milestone`, `$snippet`):
# a zero-width space after the sigil keeps them plain text, so an alert cannot ping a group.
_REF = re.compile(r"([@#!~%$])(?=\S)")


def text(value: Any, limit: int = SHOWN_TEXT) -> str:
    """One line of plain text, safe anywhere in Markdown (a table cell included)."""
    raw = str(value or "")
    cut = len(raw) > limit
    raw = " ".join(raw[:limit].split())  # no newlines: no headings, lists or quick actions
    raw = html.escape(raw, quote=False)
    raw = _REF.sub("\\1\u200b", raw)
    raw = _MD.sub(r"\\\1", raw)
    return raw + ("…" if cut else "")


def code(value: Any, limit: int = 120) -> str:
    """Inline code; backticks inside are replaced (a code span cannot escape them)."""
    # `|` would end a table cell even inside a code span (GitLab's tables split on it first).
    raw = " ".join(str(value or "")[:limit].split()).replace("`", "'").replace("|", "\\|")
    return f"`{raw}`" if raw else "`?`"


def link(url: Any, label: str) -> str:
    """A link only to http(s), percent-encoded so it cannot break out of the Markdown link."""
    raw = str(url or "")
    try:
        scheme = urlsplit(raw).scheme
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return ""
    if not raw or len(raw) > 2048 or scheme not in ("http", "https"):
        return ""
    return f"[{label}]({quote(raw, safe=':/?&=%#+,;@$*.-_~')})"
