"""Running one engine item: the same checks, lease and error policy for every kind of work.

A task message only says "look at item X". `run_item` re-reads X's state, skips it if it is
finished, not due yet, or leased by another worker, then runs `work` under a lease and turns what
happened into the item's next state: done, run again later (a deploy's next poll, a periodic
pass), or, on an error, by its kind (tasks/engine/errors.py): transient and bugs back off within the
attempt budget, permanent errors finish the item `failed` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tasks.engine.errors import classify
from tasks.engine.schedule import FINISHED, MAX_ATTEMPTS, Lease, backoff, due_now

log = logging.getLogger("devops_agent.items")


@dataclass(frozen=True)
class Outcome:
    """What a piece of work says about itself: finished with `status`, or due again in `again`
    seconds (not an error: its attempt count starts over)."""

    status: str = "done"
    again: float | None = None
    detail: str = ""


class StepFailed(Exception):
    """A named part of an item (one handler of a delivery) raised; `original` is the error."""

    def __init__(self, part: str, original: BaseException) -> None:
        super().__init__(f"{part}: {original}")
        self.part, self.original = part, original


class Engine(Protocol):
    def state(self, member: str) -> dict[str, str]: ...
    def lease(self, member: str) -> Lease | None: ...
    def running(self, member: str) -> int: ...
    def again(self, member: str, delay: float, status: str = "waiting", **fields: Any) -> bool: ...
    def finish(self, member: str, status: str, ttl: int | None = None, **fields: Any) -> None: ...


Finished = Callable[[str, dict[str, str]], None]


def run_item(engine: Engine, member: str, work: Callable[[dict[str, str], int], Outcome], *,
             ttl: int | None = None, on_finish: Finished | None = None,
             on_error: Callable[[str], None] | None = None,
             max_attempts: int = MAX_ATTEMPTS) -> str:
    """Run `work(state, attempt)` for the item if it is due; returns what happened."""
    state = engine.state(member)
    if not state:
        log.warning("no state for %s (expired?)", member)
        return "missing"
    if state.get("status") in FINISHED:
        return "already-" + state["status"]
    if not due_now(state):
        return "not-due"  # a stray early copy; the engine sends it when it is due
    lease = engine.lease(member)
    if lease is None:
        return "leased"
    try:
        attempt = engine.running(member)

        def finish(status: str, **fields: Any) -> str:
            engine.finish(member, status, ttl=ttl, **fields)
            if on_finish is not None:
                on_finish(status, {**state, **{k: str(v) for k, v in fields.items()}})
            return status

        if attempt > max_attempts:
            log.error("%s: giving up after %d attempts", member, max_attempts)
            return finish("dead", error=state.get("error", ""))
        try:
            outcome = work(state, attempt)
        except Exception as exc:  # every error is sorted by kind below
            original = exc.original if isinstance(exc, StepFailed) else exc
            part = f"{exc.part}: " if isinstance(exc, StepFailed) else ""
            verdict = classify(original)
            error = f"{part}{verdict.reason}"[:500]
            if on_error is not None:
                on_error(verdict.kind)
            if verdict.kind == "permanent":
                log.warning("%s refused for good: %s", member, error)
                return finish("failed", error=error)
            if verdict.kind == "bug":
                log.error("%s failed (attempt %d of %d): %s", member, attempt, max_attempts, error,
                          exc_info=original)
            else:
                log.warning("%s: %s (attempt %d of %d), will run again", member, error, attempt,
                            max_attempts)
            if attempt >= max_attempts:
                log.error("%s: giving up after %d attempts: %s", member, attempt, error)
                return finish("dead", error=error)
            delay = backoff(attempt, verdict.retry_after)
            engine.again(member, delay, error=error)
            return "retrying"
        if outcome.again is not None:
            engine.again(member, outcome.again, attempts=0)
            return "again"
        field = "detail" if outcome.status == "done" else "error"
        return finish(outcome.status, **({field: outcome.detail} if outcome.detail else {}))
    finally:
        lease.release()
