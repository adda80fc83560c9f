"""`devops-agent classify LOG`: the layered classifier's verdict on one job log, for a person.

The log is read from a file or standard input in the engine's blocks; it is never held whole.
The text output puts the verdict first, then why, the lines that justify it, where to read,
and what to do; --format json is `Verdict.to_dict()`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..classifier import Classifier, Verdict
from ..engine import COUNT_CAP
from ..reading import read_chunks
from ..table import RulesError, load_table
from .common import (
    EXIT_BAD_RULES,
    EXIT_MATCHED,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    err,
    user_rules,
    write_json,
)

_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\n\r\x1b\x08\x0c" + bytes(range(0x80, 0x100))


def run(args: argparse.Namespace) -> int:
    try:
        table = load_table(user_rules(args.rules))
    except RulesError as exc:
        err(str(exc))
        return EXIT_BAD_RULES
    try:
        fh = _open_log(args.log)
    except OSError as exc:
        err(f"cannot read LOG: {exc.strerror or exc}" + (f": {args.log}" if exc.strerror else ""))
        return EXIT_USAGE
    state: dict[str, Any] = {}
    try:
        with fh if fh is not sys.stdin.buffer else contextlib.nullcontext():
            result = Classifier(table).classify(
                _chunks(fh, state),
                failure_reason=args.failure_reason,
                job_name=args.job_name,
                stage=args.stage,
                exit_code=args.exit_code,
            )
    except OSError as exc:
        err(f"cannot read LOG: {exc.strerror or exc}")
        return EXIT_USAGE
    if state.get("binary"):
        err("warning: LOG looks like binary data, not a text log; classified it anyway")
    if args.format == "json":
        write_json(result.to_dict())
    else:
        sys.stdout.write(render_text(result, empty=not state))
    return EXIT_MATCHED if result.category != "unknown" else EXIT_UNKNOWN


def _open_log(spec: str) -> BinaryIO:
    if spec == "-":
        return sys.stdin.buffer
    path = Path(spec)
    if path.is_dir():
        raise OSError(f"{spec}: is a directory")
    return open(path, "rb", buffering=0)


def _chunks(fh: BinaryIO, state: dict[str, Any]) -> Iterable[bytes]:
    """File chunks, noting whether the input looks like binary rather than a text log.

    A regular file is sniffed with one pread and handed to the engine as it is (read_chunks),
    so the engine can read it in newline-aligned blocks; a pipe is sniffed on its first chunk.
    """
    try:
        regular = stat.S_ISREG(os.fstat(fh.fileno()).st_mode) and fh.seekable()
    except (AttributeError, OSError, ValueError):
        regular = False
    if regular:
        sample = os.pread(fh.fileno(), 8192, fh.tell())
        if sample:
            state["binary"] = _looks_binary(sample)
        return read_chunks(fh)
    return _sniffed(read_chunks(fh), state)


def _looks_binary(sample: bytes) -> bool:
    # Text logs (UTF-8, ANSI colours, \r progress bars) have almost no other control bytes.
    return len(sample.translate(None, _TEXT_BYTES)) * 20 > len(sample)


def _sniffed(chunks: Iterable[bytes], state: dict[str, Any]) -> Iterator[bytes]:
    for data in chunks:
        if "binary" not in state:
            state["binary"] = _looks_binary(data[:8192])
        yield data


def render_text(result: Verdict, empty: bool = False) -> str:
    """The verdict first, then why, the lines that justify it, where to read, and what to do."""
    how = (f"rule {result.rule_id}" if result.layer == "rules"
           else f"{result.layer} layer, {result.confidence} confidence")
    out = [f"{result.category}  ({how})", f"  {result.description}", f"  why: {result.reason}"]
    if empty and result.category == "unknown":
        out.append("  (the log is empty)")
    r = result.reaction
    if result.rule_id:
        reaction = r.kind + (f" (at most {r.max_retries}x)" if r.kind == "retry" else "")
        if r.labels:
            reaction += "; labels: " + ", ".join(r.labels)
        out.append(f"  suggested reaction: {reaction}")
    if result.exit_code is not None:
        out.append(f"  exit code: {result.exit_code}")
    if result.failing_command is not None:
        out.append(f"  failing command (line {result.failing_command.number}): "
                   f"$ {result.failing_command.text}")
    if result.evidence:
        shown = len(result.evidence)
        total = max(result.matched_lines, shown)
        out.append("")
        more = "+" if total >= COUNT_CAP else ""  # the engine stops counting there
        out.append(f"evidence ({shown} of {total}{more} matching lines):")
        width = len(str(result.evidence[-1].line))
        for ev in result.evidence:
            section = f" [{ev.section}]" if ev.section else ""
            out.append(f"  {ev.line:>{width}}{section}  {ev.text}")
    shown_lines = {ev.line for ev in result.evidence}
    extra = [ln for ln in result.error_lines if ln.number not in shown_lines]
    if extra:
        out.append("")
        out.append("most likely failing lines:")
        width = len(str(extra[-1].number))
        out.extend(f"  {ln.number:>{width}}  {ln.text[:400]}" for ln in extra)
    if result.also_matched:
        out.append("")
        out.append("also matched: " + ", ".join(result.also_matched))
    if result.next_steps:
        out.append("")
        out.append("next steps:")
        out.extend(f"  {line}" if line else "" for line in result.next_steps.splitlines())
    return "\n".join(out) + "\n"
