"""What is wrong with a rules table: one `Problem` per mistake, and `RulesError` carrying them all.

Validation collects every problem before raising, each with file, line, rule id and field,
because a person fixing a rules file wants the whole list, not one error per run. Kept apart
from the loading code so that importing the error type (the service's start-up check, the CLI)
costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One mistake in a rules file; str() is `file:line: rule ID: field: message`."""

    file: str
    line: int | None
    rule: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [where]
        if self.rule:
            parts.append(f"rule {self.rule}")
        if self.field:
            parts.append(self.field)
        return ": ".join(parts) + f": {self.message}"


class RulesError(Exception):
    """The rules table is invalid; `problems` has every one, str() lists them one per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"invalid rules table ({count} problem{'s' if count != 1 else ''}):\n"
            + "\n".join(f"  {p}" for p in self.problems)
        )
