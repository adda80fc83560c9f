"""How a command's reply reads: the command quoted, then the answer addressed to whoever gave it."""

from __future__ import annotations


def reply_body(line: str | None, username: str | None, text: str) -> str:
    """A reply: the command quoted, then the answer addressed to whoever gave it."""
    quoted = "\n".join("> " + text_line for text_line in line.splitlines()) if line else ""
    who = f"@{username} " if username else ""
    return f"{quoted}\n\n{who}{text}".strip()
