"""Required literals: text every match of a pattern must contain, for a cheaper prefilter.

Hyperscan's cost grows with the number of full regexes in a database (measured: 535 rule
patterns scan ~3x slower than 131), but a literal is cheap for it. A pattern such as
`Could not resolve dependencies for project (?P<p>\\S+)` can only match a line containing
"Could not resolve dependencies for project", so the prefilter may look for that literal and
leave the regex to re2, which confirms every hit on the line anyway (engine.py): the prefilter
only has to be a superset. Patterns with no long enough required literal keep their regex.

Written by hand because neither google-re2's Python binding nor Hyperscan's exposes the
required-literal analysis (re2's C++ Prefilter does, unwrapped). It walks the parse tree from
Python's own `re` parser, which reads the re2 subset our rules use; anything it cannot parse, or
any construct it does not know, yields no literal and the full regex is used: always sound.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

try:  # CPython's parser for `re` (private module; present in every CPython since 3.11)
    import re._constants as _C
    import re._parser as _parser
except ImportError:  # pragma: no cover - another Python: fall back to the full regexes
    _parser = None

# Shorter literals are frequent in ordinary log text ("error", "test"), and a literal that hits
# every block only moves the work to the confirming regex.
MIN_LITERAL = 8
MAX_ALTERNATIVES = 8

Literal = tuple[bytes, bool]  # (text, caseless)


def required_literals(pattern: str, min_len: int = MIN_LITERAL) -> list[Literal] | None:
    """Literals such that every match of `pattern` contains at least one of them, each at
    least `min_len` bytes, or None when the pattern has no such set."""
    if _parser is None or "[:" in pattern:
        # POSIX classes ([[:alpha:]]) are re2 syntax that Python's parser reads as other text.
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "possible nested set" and friends: not our syntax
            tree = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError, Warning):
        return None
    caseless = bool(tree.state.flags & _C.SRE_FLAG_IGNORECASE)
    try:
        best = _choose(_candidates(list(tree), caseless))
    except _Unsupported:
        return None
    if not best or min(len(text) for text, _ in best) < min_len or len(best) > MAX_ALTERNATIVES:
        return None
    return sorted(best)


class _Unsupported(Exception):
    """A construct whose required literals are not known here: use the full regex."""


def _choose(sets: list[set[Literal]]) -> set[Literal] | None:
    """The most selective candidate: longest shortest literal, then fewest alternatives."""
    if not sets:
        return None
    return max(sets, key=lambda s: (min(len(t) for t, _ in s), -len(s)))


def _candidates(nodes: list[tuple[Any, Any]], caseless: bool) -> list[set[Literal]]:
    """Candidate sets for a sequence: each set holds alternatives one of which every match of the
    sequence contains. Runs of literal characters are one candidate each."""
    out: list[set[Literal]] = []
    run: list[bytes] = []

    def flush() -> None:
        if run:
            text = b"".join(run)
            # re2 folds non-ASCII letters as Latin-1 under (?i); Hyperscan never folds them.
            if not (caseless and not text.isascii()):
                out.append({(text, caseless)})
            run.clear()

    for op, arg in nodes:
        if op is _C.LITERAL:
            run.append(chr(arg).encode("utf-8"))
        elif op is _C.AT:
            continue  # ^ $ \b \B are zero-width: the text around them is still contiguous
        elif op is _C.SUBPATTERN:
            flush()
            _, add_flags, del_flags, body = arg
            if del_flags & _C.SRE_FLAG_IGNORECASE:
                raise _Unsupported("(?-i) inside a caseless pattern")
            inner = caseless or bool(add_flags & _C.SRE_FLAG_IGNORECASE)
            best = _choose(_candidates(list(body), inner))
            if best:
                out.append(best)
        elif op is _C.BRANCH:
            flush()
            alternatives = [_choose(_candidates(list(b), caseless)) for b in arg[1]]
            if alternatives and all(alternatives):
                out.append(set().union(*alternatives))  # type: ignore[arg-type]
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT, getattr(_C, "POSSESSIVE_REPEAT", None)):
            flush()
            low, _high, body = arg
            if low >= 1:
                best = _choose(_candidates(list(body), caseless))
                if best:
                    out.append(best)
        elif op in (_C.ASSERT, _C.ASSERT_NOT, _C.GROUPREF, _C.GROUPREF_EXISTS):
            raise _Unsupported(str(op))  # re2 refuses these; never guess around them
        else:
            flush()  # a class, `.`, \d, a negated literal: the run of literals ends here
    flush()
    return out
