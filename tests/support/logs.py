"""Where the corpus logs live: fixtures/logs/<group>/<name>.log, found by file name."""

from __future__ import annotations

import functools
from pathlib import Path

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "logs"


@functools.cache
def _index() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(LOGS.rglob("*.log")):
        if path.name in out:
            raise AssertionError(f"two corpus logs are named {path.name}: {out[path.name]}, {path}")
        out[path.name] = path
    return out


def fixture_log(name: str) -> Path:
    """The corpus log called `name` (file names are unique across the groups)."""
    try:
        return _index()[name]
    except KeyError:
        raise FileNotFoundError(f"no corpus log named {name} under {LOGS}") from None


def all_logs() -> list[Path]:
    return list(_index().values())
