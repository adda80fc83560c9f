"""One streaming pass over a job log for every rule at once, in linear time.

Shape of the pass (why each step is there):

* Chunks (python-gitlab yields 1 KiB pieces) are coalesced into ~0.5 MiB *blocks* cut at a
  newline, so per-block Python overhead is amortised and no pattern ever sees half a line.
  Memory is one block plus one partial line (itself capped), whatever the log size. A regular
  file (read_chunks of a path or a file object, the CLI) is instead read one block at a time,
  cut at its last newline with a seek back over the partial line: no re-assembly copies, and
  newlines are counted on the reader thread.
* Each block is cleaned before matching: ANSI escapes, GitLab `section_start:`/`section_end:`
  markers (remembered, so evidence can name its job step) and FF_TIMESTAMPS line prefixes.
  Newlines are never removed, so line numbers stay those of the raw log. The markers' offsets
  (a running sum over thousands of pieces) are worked out only for blocks that hit.
* A *prefilter* (prefilter.py) says which patterns hit somewhere in the block: Hyperscan
  (block mode, SINGLEMATCH, so at most one callback per pattern per block however often it
  matches) where the wheel exists, else a google-re2 `Set`. Most blocks hit nothing and cost
  only this; Hyperscan runs on a helper thread (it releases the GIL) while the next block is
  cleaned.
* Only for the few patterns that hit, google-re2 walks the block from the hit to take line
  numbers and captures, stopping after `COUNT_CAP` lines so a pattern matching every line cannot
  turn the pass quadratic or unbounded in Python time.

Every pattern is a google-re2 regex (linear time, no backreferences/lookaround); Hyperscan is
only an accelerator and a pattern it cannot compile falls back to its prefilter mode or to re2.
"""

from __future__ import annotations

import functools
import os
import queue
import re
import stat
import threading
from collections import deque
from dataclasses import dataclass, field
from itertools import accumulate, compress
from typing import Any, BinaryIO, Iterable, Iterator

import re2

from .prefilter import Prefilter, re2_options
from .result import Evidence

try:  # the C cleaner (tasks/rules/_fastclean.c): same results, without holding the GIL
    from ._fastclean import clean as _fast_clean
except ImportError:  # built without a C compiler: the Python path below does it all
    _fast_clean = None

# Half a megabyte: a block, its cleaned copy and Hyperscan's state stay in a core's L2 cache
# (measured 10-20% faster than 1 MiB on the benchmark log; 128 KiB loses the thread overlap).
BLOCK_BYTES = 1 << 19
# A "line" longer than this (binary junk, a minified bundle) is cut and matched piecewise.
MAX_LINE_BYTES = 1 << 20
# A line with no newline is held up to this size before it is cut (independent of BLOCK_BYTES,
# so where a very long line is cut does not move when the block size is tuned).
_LONG_LINE_HOLD = MAX_LINE_BYTES + (1 << 20)
EVIDENCE_CAP = 5
COUNT_CAP = 1000
TEXT_CAP = 400
_READ_AHEAD = 2
# GitLab echoes every script line as "$ cmd" at the start of a line. Found by the prefilter with
# the rules' patterns (one more pattern costs Hyperscan nothing measurable), so the block holding
# the last command is known without a second pass over the log.
COMMAND_PATTERN = r"^\$ \S"
# Blocks of the log's end kept for the context layers: one block may end a line after the
# failing command's output began, so keep the one before it too.
TAIL_BLOCKS = 2

_CSI = re.compile(rb"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]")
# OSC (ESC ] ... BEL or ESC \\), two-byte escapes, and a lone ESC: never across a newline.
_OTHER_ESC = re.compile(rb"\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[\x20-\x2f]*[\x30-\x7e]?")
# GitLab's section markers ("ESC[0Ksection_start:<ts>:<name>[opts]\r") and CSI sequences in one
# alternation, so a single C-level re.split both removes them and reports the markers.
_ESCAPES = re.compile(
    rb"\x1b\[0Ksection_(start|end):\d+:([A-Za-z0-9_.\-]+)(?:\[[^\]\r\n]*\])?\r?"
    rb"|\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
)
_TIMESTAMP_PREFIX = re.compile(rb"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z [0-9a-fA-F]{2}[OE]\+? ?")


@functools.lru_cache(maxsize=2048)
def compile_re2(pattern: str) -> re2._Regexp:
    """Compile a rule pattern the way the engine runs it (bytes, ^/$ at line ends); raises re2.error.

    Cached: loading a table validates each pattern, then compiles it again for the engine
    (~6 ms of a CLI start-up for the default table); compiled regexes are immutable.
    """
    return re2.compile(b"(?m)" + pattern.encode("utf-8"), re2_options())


@dataclass
class Pattern:
    """One log pattern of one rule; `veto` patterns (a rule's `exclude.log`) only need to be seen."""

    rule: int
    source: str
    regex: Any  # compiled re2
    veto: bool = False


@dataclass
class RuleHits:
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
    hits: dict[int, RuleHits]
    vetoed: set[int]
    lines: int
    bytes: int
    # The last cleaned blocks as (text, newlines before it), oldest first: the context layers
    # read the failing command, the exit code and the likely error lines from the log's end.
    tail: list[tuple[bytes, int]] = field(default_factory=list)
    # The last blocks holding a GitLab script line (`$ cmd`), oldest first, likewise.
    command_blocks: list[tuple[bytes, int]] = field(default_factory=list)


def _hs_expr(source: str) -> bytes:
    # Hyperscan has no capture groups; turning named groups into plain ones keeps the meaning.
    return re.sub(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>", "(?:", source).encode("utf-8")


# -- cleaning ---------------------------------------------------------------------------------


def strip_ansi(block: bytes) -> bytes:
    """Drop terminal escape sequences; newlines are never part of one, so line numbers hold.

    CSI sequences (colours, erase-line) are nearly all of them and go in one C-level re.sub
    (~1.7 GB/s: the regex engine jumps between ESC bytes); anything else (charset switches,
    OSC titles) is rare and takes a second, general pass only when an ESC is left.
    """
    if b"\x1b" not in block:
        return block
    block = _CSI.sub(b"", block)
    if b"\x1b" in block:
        block = _OTHER_ESC.sub(b"", block)
    return block


def clean_block(raw: bytes, timestamps: bool = False) -> tuple[bytes, list[tuple[int, str, str]]]:
    """The block as rules see it, and its (offset in the cleaned block, start|end, name) events.

    FF_TIMESTAMPS prefixes go first (they sit before any colour code); then one re.split drops
    escapes and section markers together. Newlines are never removed.
    """
    if timestamps:
        raw = _TIMESTAMP_PREFIX.sub(b"", raw)
    if b"\x1b" not in raw:
        return raw, []
    if _fast_clean is not None:
        fast = _fast_clean(raw)
        if fast is not None:  # None: an escape only the Python path handles
            return fast[0], fast[1]
    parts = _ESCAPES.split(raw)
    texts = parts[0::3]
    kinds = parts[1::3]
    events: list[tuple[int, str, str]] = []
    if any(kinds):
        ends = list(accumulate(map(len, texts)))
        # compress() picks the few marker positions out of thousands of colour codes in C.
        events = [
            (ends[i], kinds[i].decode(), parts[3 * i + 2].decode("ascii", "replace"))
            for i in compress(range(len(kinds)), kinds)
        ]
    block = b"".join(texts)
    if b"\x1b" in block:  # rare non-CSI escapes; offsets above may drift by a few bytes
        block = _OTHER_ESC.sub(b"", block)
    return block, events


def quick_clean(raw: bytes | memoryview) -> tuple[bytes, list[tuple[int, str, str]], list[bytes] | None]:
    """`clean_block(raw)` without the markers' offsets: (text, events with offset -1, parts).

    The offsets (a running sum over thousands of pieces) are only needed for evidence, in the
    few blocks a pattern hits: `_exact_events(parts)` makes them from the parts kept here
    (None when there are no markers, so nothing needs to be kept). `raw` may be a memoryview
    of the start of a bytes object (the block reader's); the text returned is always bytes.
    """
    if isinstance(raw, memoryview):
        if raw.obj.find(b"\x1b", 0, len(raw)) < 0:
            return bytes(raw), [], None
    elif b"\x1b" not in raw:
        return raw, [], None
    if _fast_clean is not None:
        fast = _fast_clean(raw)
        if fast is not None:  # exact offsets already, so no parts to keep
            return fast[0], fast[1], None
    parts = _ESCAPES.split(raw)
    kinds = parts[1::3]
    events: list[tuple[int, str, str]] = []
    if any(kinds):
        events = [
            (-1, kinds[i].decode(), parts[3 * i + 2].decode("ascii", "replace"))
            for i in compress(range(len(kinds)), kinds)
        ]
    block = b"".join(parts[0::3])
    if b"\x1b" in block:  # rare non-CSI escapes, as in clean_block
        block = _OTHER_ESC.sub(b"", block)
    return block, events, (parts if events else None)


def _exact_events(parts: list[bytes]) -> list[tuple[int, str, str]]:
    """The events clean_block makes from the same split (same offsets, same order)."""
    texts = parts[0::3]
    kinds = parts[1::3]
    ends = list(accumulate(map(len, texts)))
    return [
        (ends[i], kinds[i].decode(), parts[3 * i + 2].decode("ascii", "replace"))
        for i in compress(range(len(kinds)), kinds)
    ]


def read_chunks(source: BinaryIO | str, size: int = BLOCK_BYTES) -> "FileChunks":
    """Chunks of a binary file object or a path, read ahead on a helper thread.

    File reads release the GIL, so reading the next block overlaps with cleaning this one
    (~10-15% on a big log). At most `_READ_AHEAD` chunks wait in the queue: memory stays flat.
    The result is an iterator of chunks; `Engine.scan` reads a regular file through it in
    newline-aligned blocks instead (FileChunks.blocks), saving the copies of re-assembly.
    """
    return FileChunks(source, size)


class FileChunks:
    """Iterator over a file's chunks that the engine may read as blocks instead (see blocks())."""

    def __init__(self, source: BinaryIO | str, size: int = BLOCK_BYTES):
        self.source = source
        self.size = size
        self._gen: Iterator[bytes] | None = None

    def __iter__(self) -> "FileChunks":
        return self

    def __next__(self) -> bytes:
        if self._gen is None:
            self._gen = _chunks_of(self.source, self.size)
        return next(self._gen)

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()  # type: ignore[attr-defined]

    def blocks(self) -> Iterator[tuple[bytes | memoryview, bool, int]] | None:
        """(block, ends mid-line, newlines in it) for a regular file not yet read, else None.

        Each block is one read of BLOCK_BYTES cut at its last newline; the cut-off partial line
        is read again with the next block (a seek back), so no block is ever re-assembled from
        pieces. Newlines are counted on the reader thread, next to the read.
        """
        if self._gen is not None or self.size != BLOCK_BYTES:
            return None
        src = self.source
        if isinstance(src, str):
            return _path_blocks(src)
        try:
            if not (src.seekable() and stat.S_ISREG(os.fstat(src.fileno()).st_mode)):
                return None
        except (AttributeError, OSError, ValueError):
            return None
        self._gen = iter(())  # consumed through blocks() from now on
        return _read_ahead(lambda put: _produce_blocks(src, put))


def _path_blocks(path: str) -> Iterator[tuple[bytes | memoryview, bool, int]]:
    with open(path, "rb", buffering=0) as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            yield from ((b, p, b.count(b"\n")) for b, p in _blocks(_chunks_of(fh, BLOCK_BYTES)))
            return
        yield from _read_ahead(lambda put: _produce_blocks(fh, put))


def _produce_blocks(fh: BinaryIO, put: Any) -> None:
    pending = b""  # a line longer than a block, being completed (rare)
    while True:
        data = fh.read(BLOCK_BYTES)
        if not data:
            if pending:
                put((pending, not pending.endswith(b"\n"), pending.count(b"\n")))
            return
        if pending:
            data, pending = pending + data, b""
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) < _LONG_LINE_HOLD:
                pending = data
                continue
            if not put((data, True, 0)):
                return
            continue
        newlines = data.count(b"\n", 0, cut + 1)
        if cut + 1 < len(data):
            fh.seek(cut + 1 - len(data), os.SEEK_CUR)
            # A view, not a copy: cleaning makes a new block anyway (see quick_clean).
            data = memoryview(data)[: cut + 1]
        if not put((data, False, newlines)):
            return


def _read_ahead(produce: Any) -> Iterator[Any]:
    """Items that produce(put) makes on a helper thread, at most _READ_AHEAD waiting."""
    q: queue.Queue = queue.Queue(_READ_AHEAD)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            produce(put)
            put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=run, name="rules-read", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # A reader blocked on a pipe (stdin) cannot be interrupted; it is a daemon thread.
        thread.join(timeout=1)


def _chunks_of(source: BinaryIO | str, size: int) -> Iterator[bytes]:
    if isinstance(source, str):
        with open(source, "rb", buffering=0) as fh:
            yield from _chunks_of(fh, size)
        return

    def produce(put: Any) -> None:
        while (data := source.read(size)) and put(data):
            pass

    yield from _read_ahead(produce)


def _blocks(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Newline-aligned blocks of about BLOCK_BYTES; the flag says the block ends mid-line.

    Small chunks (python-gitlab yields 1 KiB) are coalesced. When a big chunk follows a partial
    line, only that line is completed and joined; the rest of the chunk waits for the next one,
    so no more than one block plus one line is ever held.
    """
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        if not chunk:
            continue
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "replace")
        elif not isinstance(chunk, bytes):
            chunk = bytes(chunk)
        if pending and len(chunk) >= BLOCK_BYTES // 2:
            first = chunk.find(b"\n")
            if first >= 0:
                pending.append(chunk[: first + 1])
                yield b"".join(pending), False
                pending, size = [], 0
                chunk = chunk[first + 1 :] if first + 1 < len(chunk) else b""
                if not chunk:
                    continue
        pending.append(chunk)
        size += len(chunk)
        if size < BLOCK_BYTES:
            continue
        buf = pending[0] if len(pending) == 1 else b"".join(pending)
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) < _LONG_LINE_HOLD:
                pending, size = [buf], len(buf)
                continue
            yield buf, True
            pending, size = [], 0
            continue
        if cut + 1 == len(buf):
            yield buf, False
            pending, size = [], 0
            continue
        yield buf[: cut + 1], False
        rest = buf[cut + 1 :]
        pending, size = [rest], len(rest)
    if pending:
        buf = b"".join(pending)
        yield buf, not buf.endswith(b"\n")


# -- the scan ---------------------------------------------------------------------------------


class _Scanner:
    """A helper thread running the prefilter over blocks in order (two C-level queues: lighter
    per block than a ThreadPoolExecutor's futures, which showed in the profile)."""

    def __init__(self, hits: Any, scratch: Any):
        self._in: queue.SimpleQueue = queue.SimpleQueue()
        self._out: queue.SimpleQueue = queue.SimpleQueue()

        def run() -> None:
            while (block := self._in.get()) is not None:
                try:
                    self._out.put(hits(block, scratch))
                except BaseException as exc:  # handed to the consumer, raised there
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
        partial = False
        tail: deque[tuple[bytes, int]] = deque(maxlen=TAIL_BLOCKS)
        commands: deque[tuple[bytes, int]] = deque(maxlen=TAIL_BLOCKS)
        for block, events, found, partial, newlines in self._prefiltered(chunks):
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
                    if pat.rule not in vetoed and pat.regex.search(block, max(0, block.rfind(
                            b"\n", 0, max(end - 1, 0)))) is not None:
                        vetoed.add(pat.rule)
                    continue
                rh = hits.get(pat.rule)
                if rh is None:
                    rh = hits[pat.rule] = RuleHits()
                if rh.count < COUNT_CAP:
                    self._confirm(pat, block, end, line_base, rh, sections, events)
            for _, kind, name in events:
                _apply_section(sections, kind, name)
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

    def _prefiltered(self, chunks: Iterable[bytes]) -> Iterator[tuple[bytes, list, dict[int, int], bool, int | None]]:
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
        pending: tuple | None = None
        blocks = chunks.blocks() if isinstance(chunks, FileChunks) else None
        if blocks is None:
            blocks = ((raw, partial, None) for raw, partial in _blocks(chunks))
        try:
            for raw, partial, newlines in blocks:
                if timestamps is None:
                    timestamps = _TIMESTAMP_PREFIX.match(raw) is not None
                if timestamps:
                    raw = _TIMESTAMP_PREFIX.sub(b"", raw)
                item = quick_clean(raw) + (partial, newlines)
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
                yield self._settle(pending, scanner.result() if scanner else hits(pending[0], scratch))
        finally:
            if scanner is not None:
                scanner.close()

    @staticmethod
    def _settle(pending: tuple, found: dict[int, int]) -> tuple:
        block, events, parts, partial, newlines = pending
        if found and parts is not None:  # evidence names its section: markers' offsets needed
            events = _exact_events(parts)
        return block, events, found, partial, newlines

    def _confirm(self, pat, block, end, line_base, rh, sections, events) -> None:
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
                        text=_display(line, m.start() - offset),
                        captures=_captures(m),
                        section=_section_at(sections, events, le),
                    )
                )
        if len(rh.evidence) > EVIDENCE_CAP:  # several patterns of one rule: keep the earliest lines
            rh.evidence.sort(key=lambda e: e.line)
            del rh.evidence[EVIDENCE_CAP:]


def _captures(m: Any) -> dict[str, str]:
    out = {}
    for name, value in m.groupdict().items():
        if value is None:
            continue
        key = name.decode() if isinstance(name, bytes) else name
        out[key] = _decode(value.strip())[:TEXT_CAP]
    return out


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").replace("\r", " ").replace("\x00", "")


def _display(line: bytes, at: int) -> str:
    """The line as a person reads it: trimmed, and around the match when the line is very long."""
    if len(line) > TEXT_CAP:
        start = max(0, min(at - 80, len(line) - TEXT_CAP))
        piece = line[start : start + TEXT_CAP]
        text = ("…" if start else "") + _decode(piece) + ("…" if start + TEXT_CAP < len(line) else "")
    else:
        text = _decode(line)
    return text.rstrip()


def _apply_section(stack: list[str], kind: str, name: str) -> None:
    if kind == "start":
        stack.append(name)
    elif name in stack:  # close it and anything left open inside it
        del stack[len(stack) - 1 - stack[::-1].index(name) :]


def _section_at(stack: list[str], events: list[tuple[int, str, str]], line_end: int) -> str | None:
    """The innermost open section for a line: markers before its end (same line included)."""
    current = list(stack)
    for offset, kind, name in events:
        if offset > line_end:
            break
        _apply_section(current, kind, name)
    return current[-1] if current else None
