"""One streaming pass over a job log for every rule at once, in linear time.

Shape of the pass (why each step is there):

* The log arrives as newline-aligned blocks of about half a megabyte (reading.py), so per-block
  Python overhead is amortised and no pattern ever sees half a line. Memory is one block plus
  one partial line (itself capped), whatever the log size.
* Each block is cleaned before matching (cleaning.py): ANSI escapes, GitLab
  `section_start:`/`section_end:` markers (remembered, so evidence can name its job step) and
  FF_TIMESTAMPS line prefixes. Newlines are never removed, so line numbers stay those of the
  raw log. The markers' offsets (a running sum over thousands of pieces) are worked out only
  for blocks that hit.
* A *prefilter* (prefilter.py) says which patterns hit somewhere in the block: Hyperscan
  (block mode, SINGLEMATCH, so at most one callback per pattern per block however often it
  matches) where the wheel exists, else a google-re2 `Set`. Most blocks hit nothing and cost
  only this; Hyperscan runs on a helper thread (it releases the GIL) while the next block is
  cleaned.
* Only for the few patterns that hit, google-re2 walks the block from the hit to take line
  numbers and captures (evidence.py), stopping after `COUNT_CAP` lines so a pattern matching
  every line cannot turn the pass quadratic or unbounded in Python time.

Every pattern is a google-re2 regex (linear time, no backreferences/lookaround); Hyperscan is
only an accelerator and a pattern it cannot compile falls back to its prefilter mode or to re2.
"""

from __future__ import annotations

import functools
import queue
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import re2

from .cleaning import TIMESTAMP_PREFIX, Event, apply_section, exact_events, quick_clean, section_at
from .evidence import captures, display
from .prefilter import Prefilter, re2_options
from .reading import FileChunks, aligned_blocks
from .result import Evidence

EVIDENCE_CAP = 5
COUNT_CAP = 1000
# GitLab echoes every script line as "$ cmd" at the start of a line. Found by the prefilter with
# the rules' patterns (one more pattern costs Hyperscan nothing measurable), so the block holding
# the last command is known without a second pass over the log.
COMMAND_PATTERN = r"^\$ \S"
# Blocks of the log's end kept for the context layers: one block may end a line after the
# failing command's output began, so keep the one before it too.
TAIL_BLOCKS = 2

Block = tuple[bytes, int]  # a cleaned block and the newlines before it in the log
# A cleaned block on its way to confirmation: (text, section events, prefilter hits as
# {pattern id: end of its first hit}, ends mid-line, newlines in it or None: not counted yet).
_Prefiltered = tuple[bytes, list[Event], dict[int, int], bool, int | None]
# The same before the prefilter ran: (text, events, split parts or None, ends mid-line, newlines).
_Cleaned = tuple[bytes, list[Event], list[bytes] | None, bool, int | None]


@functools.lru_cache(maxsize=2048)
def compile_re2(pattern: str) -> re2._Regexp:
    """Compile a rule pattern the way the engine runs it (bytes, ^/$ at line ends).

    Raises re2.error. Cached: loading a table validates each pattern, then compiles it again
    for the engine (~6 ms of a CLI start-up for the default table); compiled regexes are
    immutable.
    """
    return re2.compile(b"(?m)" + pattern.encode("utf-8"), re2_options())


@dataclass
class Pattern:
    """One log pattern of one rule; a `veto` pattern (a rule's `exclude.log`) need only be seen."""

    rule: int
    source: str
    regex: Any  # compiled re2
    veto: bool = False


@dataclass
class RuleHits:
    """What one rule's patterns found: the earliest lines as evidence, and every matching line
    number (counting stops at COUNT_CAP)."""

    evidence: list[Evidence] = field(default_factory=list)
    lines: set[int] = field(default_factory=set)
    # line_base of the block evidence was last taken from: a rule's other patterns may still
    # find earlier lines in that same block, so it stays open for them.
    evidence_block: int = -1

    @property
    def count(self) -> int:
        return len(self.lines)


@dataclass
class ScanResult:
    """What one pass over a log saw: hits by rule index (confirmed by re2), the rules their
    `exclude.log` vetoed, the log's size, and its end for the context layers."""

    hits: dict[int, RuleHits]
    vetoed: set[int]
    lines: int
    bytes: int
    # The last cleaned blocks as (text, newlines before it), oldest first: the context layers
    # read the failing command, the exit code and the likely error lines from the log's end.
    tail: list[Block] = field(default_factory=list)
    # The last blocks holding a GitLab script line (`$ cmd`), oldest first, likewise.
    command_blocks: list[Block] = field(default_factory=list)


def _hs_expr(source: str) -> bytes:
    # Hyperscan has no capture groups; turning named groups into plain ones keeps the meaning.
    return re.sub(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>", "(?:", source).encode("utf-8")


class _Scanner:
    """A helper thread running the prefilter over blocks in order (two C-level queues: lighter
    per block than a ThreadPoolExecutor's futures, which showed in the profile)."""

    def __init__(self, hits: Callable[[bytes, Any], dict[int, int]], scratch: Any):
        self._in: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._out: queue.SimpleQueue[dict[int, int] | BaseException] = queue.SimpleQueue()

        def run() -> None:
            while (block := self._in.get()) is not None:
                try:
                    self._out.put(hits(block, scratch))
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                    self._out.put(exc)

        self._thread = threading.Thread(target=run, name="rules-scan", daemon=True)
        self._thread.start()

    def submit(self, block: bytes) -> None:
        self._in.put(block)

    def result(self) -> dict[int, int]:
        found = self._out.get()
        if isinstance(found, BaseException):
            raise found
        return found

    def close(self) -> None:
        self._in.put(None)  # scans already queued finish first; at most two
        self._thread.join()


class Engine:
    """Compiled once per rules table; `scan` may run concurrently (state lives in the call)."""

    def __init__(
        self,
        patterns: list[Pattern],
        line_excludes: dict[int, list[Any]] | None = None,
        use_hyperscan: bool | None = None,
    ):
        # Internal patterns carry a negative rule index: they mark blocks, they match no rule.
        self.patterns = [*patterns, Pattern(-1, COMMAND_PATTERN, compile_re2(COMMAND_PATTERN))]
        self.line_excludes = line_excludes or {}
        self.prefilter = Prefilter([(i, _hs_expr(p.source)) for i, p in enumerate(self.patterns)],
                                   use_hyperscan)

    @property
    def backend(self) -> str:
        return self.prefilter.backend

    def scan(self, chunks: Iterable[bytes]) -> ScanResult:
        hits: dict[int, RuleHits] = {}
        vetoed: set[int] = set()
        sections: list[str] = []
        line_base = 0  # newlines before the current block
        total = 0
        partial = False  # the last block ends mid-line: one more line than newlines
        tail: deque[Block] = deque(maxlen=TAIL_BLOCKS)
        commands: deque[Block] = deque(maxlen=TAIL_BLOCKS)
        for block, events, found, ends_mid_line, newlines in self._prefiltered(chunks):
            partial = ends_mid_line
            total += len(block)
            tail.append((block, line_base))
            # In the order the hits end, whatever order the prefilter reported them in.
            for pid, end in sorted(found.items(), key=lambda kv: kv[1]):
                pat = self.patterns[pid]
                if pat.rule < 0:
                    commands.append((block, line_base))
                    continue
                if pat.veto:
                    # The prefilter may be looking for a required literal only: a veto counts
                    # when the pattern itself matches (one re2 search, rarely needed).
                    line_start = max(0, block.rfind(b"\n", 0, max(end - 1, 0)))
                    if pat.rule not in vetoed and pat.regex.search(block, line_start) is not None:
                        vetoed.add(pat.rule)
                    continue
                rh = hits.get(pat.rule)
                if rh is None:
                    rh = hits[pat.rule] = RuleHits()
                if rh.count < COUNT_CAP:
                    self._confirm(pat, block, end, line_base, rh, sections, events)
            for _, kind, name in events:
                apply_section(sections, kind, name)
            line_base += block.count(b"\n") if newlines is None else newlines
        for h in hits.values():
            h.evidence.sort(key=lambda e: e.line)  # a rule's patterns find lines in any order
        # Hits that re2 did not confirm (prefilter supersets, cross-line matches) are not hits.
        return ScanResult(
            hits={r: h for r, h in hits.items() if h.count},
            vetoed=vetoed,
            lines=line_base + (1 if partial else 0),
            bytes=total,
            tail=list(tail),
            command_blocks=list(commands),
        )

    def _prefiltered(self, chunks: Iterable[bytes]) -> Iterator[_Prefiltered]:
        """Cleaned blocks with their section events, prefilter hits, and newline counts, in order.

        Hyperscan releases the GIL while it scans, so from the second block on, block N is
        scanned on a helper thread while this thread confirms block N-1's hits and cleans block
        N+1: the two halves of the work overlap instead of adding up. At most three blocks are
        alive at once, so memory stays flat.

        Blocks are cleaned by `quick_clean`, which leaves the markers' offsets to the few blocks
        with prefilter hits. Newline counts come from the reader thread when the log is a
        regular file (None: counted here).
        """
        hits = self.prefilter.hits
        # One scratch is enough: scans never overlap (one helper thread, or none).
        scratch = self.prefilter.scratch()
        timestamps: bool | None = None
        scanner: _Scanner | None = None
        pending: _Cleaned | None = None
        file_blocks = chunks.blocks() if isinstance(chunks, FileChunks) else None
        blocks: Iterator[tuple[bytes | memoryview, bool, int | None]] = (
            file_blocks if file_blocks is not None
            else ((raw, partial, None) for raw, partial in aligned_blocks(chunks))
        )
        try:
            for raw, partial, newlines in blocks:
                if timestamps is None:
                    timestamps = TIMESTAMP_PREFIX.match(raw) is not None
                if timestamps:
                    raw = TIMESTAMP_PREFIX.sub(b"", raw)
                item: _Cleaned = (*quick_clean(raw), partial, newlines)
                if pending is None:
                    pending = item  # a one-block log never starts a thread
                    continue
                if scanner is None:
                    scanner = _Scanner(hits, scratch)
                    scanner.submit(pending[0])
                scanner.submit(item[0])
                yield self._settle(pending, scanner.result())
                pending = item
            if pending is not None:
                found = scanner.result() if scanner else hits(pending[0], scratch)
                yield self._settle(pending, found)
        finally:
            if scanner is not None:
                scanner.close()

    @staticmethod
    def _settle(pending: _Cleaned, found: dict[int, int]) -> _Prefiltered:
        block, events, parts, partial, newlines = pending
        if found and parts is not None:  # evidence names its section: markers' offsets needed
            events = exact_events(parts)
        return block, events, found, partial, newlines

    def _confirm(self, pat: Pattern, block: bytes, end: int, line_base: int, rh: RuleHits,
                 sections: list[str], events: list[Event]) -> None:
        rx = pat.regex
        excludes = self.line_excludes.get(pat.rule, ())
        # All single-line matches end at or after the prefilter's first end: start on its line.
        pos = block.rfind(b"\n", 0, max(end - 1, 0)) + 1 if end else 0
        counted_to, line_no = 0, line_base  # newlines counted incrementally, so one pass per block
        want_evidence = len(rh.evidence) < EVIDENCE_CAP or rh.evidence_block == line_base
        evidence_before = len(rh.evidence)
        n = len(block)
        while pos < n and rh.count < COUNT_CAP:
            m = rx.search(block, pos)
            if m is None:
                break
            start = m.start()
            ls = block.rfind(b"\n", 0, start) + 1
            le = block.find(b"\n", start)
            if le < 0:
                le = n
            pos = le + 1
            line = block[ls:le]
            if m.end() > le:  # matched across lines; a rule matches within one line only
                m = rx.search(line)
                if m is None:
                    continue
                offset = 0
            else:
                offset = ls
            if excludes and any(x.search(line) for x in excludes):
                continue
            line_no += block.count(b"\n", counted_to, ls)
            counted_to = ls
            number = line_no + 1
            if number in rh.lines:
                continue
            rh.lines.add(number)
            if want_evidence and len(rh.evidence) - evidence_before < EVIDENCE_CAP:
                rh.evidence_block = line_base
                rh.evidence.append(
                    Evidence(
                        line=number,
                        text=display(line, m.start() - offset),
                        captures=captures(m),
                        section=section_at(sections, events, le),
                    )
                )
        if len(rh.evidence) > EVIDENCE_CAP:  # several patterns of one rule: keep the earliest lines
            rh.evidence.sort(key=lambda e: e.line)
            del rh.evidence[EVIDENCE_CAP:]
