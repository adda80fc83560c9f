"""Alertmanager's label matchers (`name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`), for the
selector that says which alerts may roll an environment back. Same meaning as Alertmanager's:
a regex matches the whole value, and a label the alert lacks has the empty value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        assert self.pattern is not None
        hit = self.pattern.fullmatch(have) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """One matcher, or ValueError saying what is wrong with it."""
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(f"{text[:80]!r} is not a matcher; write e.g. severity=\"critical\" or "
                         "alertname=~\"High.*\"")
    name, op, raw = m.groups()
    value = re.sub(r"\\(.)", r"\1", raw)
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text[:80]!r}: not a valid regular expression ({exc})") from None
    return Matcher(name, op, value, pattern)


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
