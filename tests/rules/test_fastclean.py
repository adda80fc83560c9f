"""The C cleaner gives exactly what the Python path gives, or steps aside (None)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tasks.ci.rules import cleaning, load_table

fast = pytest.importorskip("tasks.ci.rules._fastclean", reason="built without a C compiler")

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "logs"
PIECES = [b"\x1b", b"[", b"0", b"K", b"m", b";", b"section_", b"start:", b"end:", b"12", b":",
          b"name", b"\r", b"\n", b"x", b"]", b"[a=b]", b" ", b"\x1b[0K", b"\x1b[32;1m", b"\x07",
          b"\x1b]0;t", b"\xff", b"-", b"."]


def python_clean(raw: bytes):
    saved, cleaning._fast_clean = cleaning._fast_clean, None
    try:
        return cleaning.clean_block(raw)
    finally:
        cleaning._fast_clean = saved


def samples():
    yield from (p.read_bytes() for p in sorted(LOGS.rglob("*.log")))
    rnd = random.Random(7)  # noqa: S311 - seeded, for reproducible inputs
    for _ in range(5000):
        yield b"".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 40)))


def test_same_text_events_and_newlines_as_python():
    compared = 0
    for raw in samples():
        result = fast.clean(raw)
        if result is None:
            continue  # an escape only the Python path handles
        text, events, newlines = result
        assert (text, events) == python_clean(raw), raw[:200]
        assert newlines == raw.count(b"\n")
        compared += 1
    assert compared > 1000  # the rest hold escapes only the Python path handles


def test_steps_aside_for_escapes_it_does_not_handle():
    for raw in (b"a\x1b]0;title\x07b", b"lone \x1b end", b"\x1b[31", b"\x1b(B"):
        assert fast.clean(raw) is None
    assert fast.clean(memoryview(b"\x1b[1mok\x1b[0m\n")) == (b"ok\n", [], 1)


def test_classification_is_the_same_without_it(monkeypatch):
    table = load_table(None)
    logs = sorted(LOGS.rglob("*.log"))
    with_c = [table.classify([p.read_bytes()]).to_dict() for p in logs]
    monkeypatch.setattr(cleaning, "_fast_clean", None)
    without = [table.classify([p.read_bytes()]).to_dict() for p in logs]
    assert with_c == without
