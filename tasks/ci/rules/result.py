"""What a classification returns: plain frozen dataclasses, `to_dict()` in the CLI's JSON shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REACTION_KINDS = ("retry", "fix", "label", "none")


@dataclass(frozen=True)
class Reaction:
    """What the rule suggests the service does; `max_retries` only means something for retry."""

    kind: str = "none"
    max_retries: int = 0
    labels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "max_retries": self.max_retries, "labels": list(self.labels)}


@dataclass(frozen=True)
class Evidence:
    """One log line a rule matched: 1-based line number, the (ANSI-free, truncated) text."""

    line: int
    text: str
    captures: dict[str, str] = field(default_factory=dict)
    section: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "text": self.text, "captures": dict(self.captures),
                "section": self.section}


@dataclass(frozen=True)
class Classification:
    category: str = "unknown"
    rule_id: str | None = None
    description: str = "No rule matched this job's failure."
    next_steps: str = ""
    reaction: Reaction = field(default_factory=Reaction)
    evidence: list[Evidence] = field(default_factory=list)
    # Lines the winning rule matched in all; evidence keeps only the first few.
    matched_lines: int = 0
    also_matched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "rule": self.rule_id,
            "description": self.description,
            "evidence": [e.to_dict() for e in self.evidence],
            "matched_lines": self.matched_lines,
            "also_matched": list(self.also_matched),
            "next_steps": self.next_steps,
            "reaction": self.reaction.to_dict(),
        }
