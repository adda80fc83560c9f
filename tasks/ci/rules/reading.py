"""Reading a job log as newline-aligned blocks of about half a megabyte, with flat memory.

Rules match one line at a time, and Python's per-call overhead would dominate if the engine
looked at python-gitlab's 1 KiB chunks one by one, so chunks are coalesced into ~0.5 MiB blocks
cut at a newline (`aligned_blocks`): no pattern ever sees half a line, and no more than one
block plus one partial line (itself capped) is held, whatever the log size.

A regular file (`read_chunks` of a path or a file object: the CLI, the backtest cache) is
instead read one block at a time and cut at its last newline, with a seek back over the partial
line: no re-assembly copies, and newlines are counted on the reader thread. Reads happen on a
helper thread (file reads release the GIL), so reading block N+1 overlaps with scanning block N.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

# Half a megabyte: a block, its cleaned copy and Hyperscan's state stay in a core's L2 cache
# (measured 10-20% faster than 1 MiB on the benchmark log; 128 KiB loses the thread overlap).
BLOCK_BYTES = 1 << 19
# A "line" longer than this (binary junk, a minified bundle) is cut and matched piecewise.
MAX_LINE_BYTES = 1 << 20
# A line with no newline is held up to this size before it is cut (independent of BLOCK_BYTES,
# so where a very long line is cut does not move when the block size is tuned).
_LONG_LINE_HOLD = MAX_LINE_BYTES + (1 << 20)
_READ_AHEAD = 2

# (block, ends mid-line, newlines in it): what the block reader of a regular file yields.
FileBlock = tuple[bytes | memoryview, bool, int]
Put = Callable[[Any], bool]  # hands one item to the consumer; False: the consumer has stopped


def read_chunks(source: BinaryIO | str, size: int = BLOCK_BYTES) -> FileChunks:
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

    def __iter__(self) -> FileChunks:
        return self

    def __next__(self) -> bytes:
        if self._gen is None:
            self._gen = _chunks_of(self.source, self.size)
        return next(self._gen)

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()  # type: ignore[attr-defined]  # the generator _chunks_of made

    def blocks(self) -> Iterator[FileBlock] | None:
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


def _path_blocks(path: str) -> Iterator[FileBlock]:
    with open(path, "rb", buffering=0) as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            chunks = _chunks_of(fh, BLOCK_BYTES)
            yield from ((b, p, b.count(b"\n")) for b, p in aligned_blocks(chunks))
            return
        yield from _read_ahead(lambda put: _produce_blocks(fh, put))


def _produce_blocks(fh: BinaryIO, put: Put) -> None:
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
        block: bytes | memoryview = data
        if cut + 1 < len(data):
            fh.seek(cut + 1 - len(data), os.SEEK_CUR)
            # A view, not a copy: cleaning makes a new block anyway (see quick_clean).
            block = memoryview(data)[: cut + 1]
        if not put((block, False, newlines)):
            return


def _read_ahead(produce: Callable[[Put], None]) -> Iterator[Any]:
    """Items that produce(put) makes on a helper thread, at most _READ_AHEAD waiting."""
    q: queue.Queue[object] = queue.Queue(_READ_AHEAD)
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
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
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

    def produce(put: Put) -> None:
        while (data := source.read(size)) and put(data):
            pass

    yield from _read_ahead(produce)


def aligned_blocks(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
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
