"""Which rule patterns hit a block: Hyperscan where the wheel exists, google-re2's Set elsewhere.

A prefilter only has to be a superset: engine.py confirms every hit with re2 on the line itself,
so a pattern Hyperscan can only take in its approximate PREFILTER mode, or not at all (then it
goes to the re2 Set), is still matched exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import threading
from pathlib import Path
from typing import Any

import re2

from tasks.config.settings import load_settings

from .literals import required_literals

try:  # hyperscan wheels exist for x86_64 only; the re2 path must stand on its own
    import hyperscan
except ImportError:  # pragma: no cover - depends on the platform
    # The stubs make the name a module; None (tested for before every use) means "not here".
    hyperscan = None  # type: ignore[assignment]


def re2_options() -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # errors are reported to the user by validate.py, not to stderr
    # Bytes semantics, like Hyperscan's: in UTF-8 mode re2's `.` or `\S` would match a whole
    # multi-byte character where Hyperscan matches one byte, and a prefilter must never miss
    # what the confirming regex would find. Literal UTF-8 text in a pattern still matches.
    opts.encoding = opts.Encoding.LATIN1
    return opts


class _HyperscanPrefilter:
    """Which patterns hit a block, and where the first one ends.

    A pattern with a long required literal (literals.py) is looked for by that literal (or its
    few alternatives), the rest by their full regex: Hyperscan's cost grows with the number of
    full regexes, and re2 confirms every hit either way. Database ids are positions in
    `self.owner`, which maps each back to its pattern."""

    def __init__(self, patterns: list[tuple[int, bytes]]):
        base = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_MULTILINE
        self._local = threading.local()
        self.rejected: list[int] = []
        # The cache is keyed by the patterns themselves, so a start-up that finds it skips the
        # literal analysis too (~0.5 s for a table of 600 patterns), not only the compile.
        key = _cache_key(patterns)
        cached = _cache_load(key)
        if cached is not None:
            self.db, self.rejected, self.empty, self.owner, self.literal_patterns = cached
            return
        entries: list[tuple[int, bytes, int]] = []  # (pattern id, expression, flags)
        self.literal_patterns = 0
        for pid, expr in patterns:
            literals = required_literals(expr.decode("utf-8", "surrogateescape"))
            if literals is None:
                entries.append((pid, expr, base))
                continue
            self.literal_patterns += 1
            for text, caseless in literals:
                escaped = re.escape(text.decode("latin-1")).encode("latin-1")
                flags = base | (hyperscan.HS_FLAG_CASELESS if caseless else 0)
                entries.append((pid, escaped, flags))
        self.owner = [pid for pid, _, _ in entries]
        self.empty = not entries
        self.db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        chosen = [(i, expr, flags) for i, (_, expr, flags) in enumerate(entries)]
        try:
            self._compile(chosen)
        except hyperscan.error:
            # Hyperscan names no culprit: find each pattern's flags one by one (slow path, only
            # for tables with a construct Hyperscan lacks, e.g. lookaround or (?U)).
            chosen = []
            for i, (pid, expr, flags) in enumerate(entries):
                flag = _hs_flags_for(expr, flags)
                if flag is None:
                    self.rejected.append(pid)
                else:
                    chosen.append((i, expr, flag))
            rejected = set(self.rejected)
            # A pattern none of whose expressions compiled goes to re2 whole.
            chosen = [c for c in chosen if self.owner[c[0]] not in rejected]
            self._compile(chosen)
        self.empty = not chosen
        if chosen:
            _cache_store(key, self.db, self.rejected, self.owner, self.literal_patterns)

    def _compile(self, chosen: list[tuple[int, bytes, int]]) -> None:
        if chosen:
            ids, exprs, flags = zip(*chosen, strict=True)
            self.db.compile(expressions=list(exprs), ids=list(ids), elements=len(ids),
                            flags=list(flags))

    def scratch(self) -> Any:
        # One scratch per calling thread keeps concurrent classifications in threads from
        # sharing it, and spares a backtest over thousands of small logs an allocation per log
        # (0.1 ms each: a fifth of a small log's classification). A scan uses its scratch on one
        # thread at a time (its helper thread while the caller waits), so reuse is safe.
        if self.empty:
            return None
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self.db)
        return scratch

    def hits(self, block: bytes, scratch: Any) -> dict[int, int]:
        found: dict[int, int] = {}
        if self.empty:
            return found

        owner = self.owner

        def on_match(hs_id: int, _from: int, to: int, _flags: int, _ctx: Any) -> None:
            pid = owner[hs_id]
            if pid not in found or to < found[pid]:  # the earliest of a pattern's literals
                found[pid] = to

        self.db.scan(block, match_event_handler=on_match, scratch=scratch)
        return found


def _cache_dir() -> Path | None:
    """Where compiled databases are kept: DEVOPS_AGENT_CACHE_DIR ("" disables), else XDG
    (XDG_CACHE_HOME is the desktop standard's variable, not one of our settings)."""
    configured = load_settings(require_secret=False).cache_dir
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "devops-agent"


# The analysis that turns patterns into database entries lives in these files: a change to
# either must not load a database built by the old code.
_ANALYSIS_SOURCES = (Path(__file__), Path(__file__).with_name("literals.py"))


def _cache_key(patterns: list[tuple[int, bytes]]) -> str:
    h = hashlib.sha256(f"{getattr(hyperscan, '__version__', '?')}|{platform.machine()}|3".encode())
    for source in _ANALYSIS_SOURCES:
        h.update(hashlib.sha256(source.read_bytes()).digest())
    for pid, expr in patterns:
        h.update(b"%d\0%s\0" % (pid, expr))
    return h.hexdigest()


def _cache_load(key: str) -> tuple[Any, list[int], bool, list[int], int] | None:
    """A serialized database for exactly these patterns (compiling and the literal analysis cost
    ~0.6 s per start-up, loading ~1 ms). Any doubt (unreadable, truncated, digest mismatch)
    means build it again."""
    root = _cache_dir()
    if root is None:
        return None
    try:
        raw = (root / f"hs-{key}.db").read_bytes()
        header, _, blob = raw.partition(b"\n")
        meta = json.loads(header)
        if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
            return None
        owner = [int(pid) for pid in meta["owner"]]
        db = hyperscan.loadb(blob, hyperscan.HS_MODE_BLOCK)
        return db, list(meta["rejected"]), bool(meta["empty"]), owner, int(meta["literal_patterns"])
    except (OSError, ValueError, KeyError, TypeError, hyperscan.error):
        return None


def _cache_store(key: str, db: Any, rejected: list[int], owner: list[int],
                 literal_patterns: int) -> None:
    root = _cache_dir()
    if root is None:
        return
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        blob = hyperscan.dumpb(db)
        meta = {"sha256": hashlib.sha256(blob).hexdigest(), "rejected": rejected, "empty": False,
                "owner": owner, "literal_patterns": literal_patterns}
        path = root / f"hs-{key}.db"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(json.dumps(meta).encode() + b"\n" + blob)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    except (OSError, hyperscan.error):
        pass


def _hs_flags_for(expr: bytes, base: int) -> int | None:
    """Flags Hyperscan takes this pattern with: exact, else prefilter (a superset re2 confirms)."""
    for flag in (base, base | hyperscan.HS_FLAG_PREFILTER):
        try:
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(expressions=[expr], ids=[0], elements=1, flags=[flag])
            return flag
        except hyperscan.error:
            continue
    return None


class _Re2SetPrefilter:
    def __init__(self, patterns: list[tuple[int, bytes]]):
        self.ids = [pid for pid, _ in patterns]
        self.set = None
        if patterns:
            self.set = re2.Set.SearchSet(re2_options())
            for _, expr in patterns:
                self.set.Add(b"(?m)" + expr)
            self.set.Compile()

    def hits(self, block: bytes) -> dict[int, int]:
        if self.set is None:
            return {}
        # re2.Set tells which patterns hit, not where: confirmation starts at the block's start.
        return {self.ids[i]: 0 for i in self.set.Match(block) or ()}


_CASELESS = re.compile(rb"\(\?[a-zA-Z]*i[a-zA-Z]*[:)]")


def _same_in_both(expr: bytes) -> bool:
    """Whether Hyperscan (bytes, ASCII classes) and re2 (Latin-1) surely agree on a pattern.

    Both match bytes one at a time, so literal UTF-8 text (`✖ 3 problems`) and classes or
    alternations of it mean the same in both. What differs: Unicode classes (\\pL), and case
    folding of non-ASCII bytes, which re2 folds as Latin-1 letters and Hyperscan never does. A
    prefilter that misses what re2 would match loses a hit: those patterns go to re2's Set.
    """
    if b"\\p" in expr or b"\\P" in expr:
        return False
    return expr.isascii() or not _CASELESS.search(expr)


class Prefilter:
    """Hyperscan for every pattern it takes, re2.Set for the rest (all of them without it)."""

    def __init__(self, patterns: list[tuple[int, bytes]], use_hyperscan: bool | None = None):
        if use_hyperscan is None:
            use_hyperscan = hyperscan is not None
        self.hs = None
        rest = patterns
        if use_hyperscan and hyperscan is not None and patterns:
            ours = [p for p in patterns if _same_in_both(p[1])]
            rest = [p for p in patterns if not _same_in_both(p[1])]
            if ours:
                self.hs = _HyperscanPrefilter(ours)
                rejected = set(self.hs.rejected)
                rest += [p for p in ours if p[0] in rejected]
        self.re2 = _Re2SetPrefilter(rest)
        self.backend = ("hyperscan" if self.hs else "re2") + ("+re2" if self.hs and rest else "")

    def scratch(self) -> Any:
        return self.hs.scratch() if self.hs else None

    def hits(self, block: bytes, scratch: Any) -> dict[int, int]:
        found = self.hs.hits(block, scratch) if self.hs else {}
        if self.re2.set is not None:
            found.update(self.re2.hits(block))
        return found
