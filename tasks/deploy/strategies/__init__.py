"""The deploy state machine's phases, one small function each, one module per strategy.

A phase handler reads the world, makes at most a few API calls, updates `ctx.rec` (phase and
scratch data) and returns a Step, or None to run the next phase in the same `advance`. Every
handler must be safe to run twice: a worker may die after its API call and before the record
is saved, and the next worker re-runs the same phase. So writes are absolute ("image = X",
"replicas = N", "selector = green"), never relative, and a handler first checks whether its
effect is already there.

`base.py` holds what the strategies share; `rolling.py`, `blue_green.py` and `canary.py` their
phases; this module the tables the service runs them from (tasks/deploy/service.py).
"""

from __future__ import annotations

from tasks.deploy.strategies.base import Ctx, Failure, Handler
from tasks.deploy.strategies.blue_green import (
    bg_abort,
    bg_await_promote,
    bg_flip,
    bg_init,
    bg_post_verify,
    bg_rollout,
    bg_switch,
    bg_switch_back,
    bg_verify,
)
from tasks.deploy.strategies.canary import (
    canary_abort,
    canary_abort_wait,
    canary_analyze,
    canary_init,
    canary_promote,
    canary_promote_wait,
    canary_scale,
    canary_wait,
)
from tasks.deploy.strategies.rolling import (
    rolling_init,
    rolling_rollback,
    rolling_rollback_wait,
    rolling_rollout,
    rolling_verify,
)

__all__ = ["ABORT_PHASE", "PHASES", "ROLLBACK_START", "UNDO_PHASES", "Ctx", "Failure", "Handler"]

PHASES: dict[str, dict[str, Handler]] = {
    "rolling": {"init": rolling_init, "rollout": rolling_rollout, "verify": rolling_verify,
                "rollback": rolling_rollback, "rollback_wait": rolling_rollback_wait},
    "blue_green": {"init": bg_init, "bg_rollout": bg_rollout, "bg_verify": bg_verify,
                   "bg_await_promote": bg_await_promote, "bg_switch": bg_switch,
                   "bg_post_verify": bg_post_verify, "bg_switch_back": bg_switch_back,
                   "bg_abort": bg_abort, "rollback": bg_abort, "bg_flip": bg_flip},
    "canary": {"init": canary_init, "canary_scale": canary_scale, "canary_wait": canary_wait,
               "canary_analyze": canary_analyze, "canary_promote": canary_promote,
               "canary_promote_wait": canary_promote_wait, "canary_abort": canary_abort,
               "canary_abort_wait": canary_abort_wait, "rollback": rolling_rollback,
               "rollback_wait": rolling_rollback_wait},
}

# where a deploy goes when it must be undone (a failure, or `rollback` mid-deploy)
ABORT_PHASE = {"rolling": "rollback", "blue_green": "bg_abort", "canary": "canary_abort"}
# the first phase of a manual rollback (the fast path: no analysis)
ROLLBACK_START = {"rolling": "rollback", "blue_green": "bg_flip", "canary": "rollback"}
# phases after which a failure means "undo"; before them nothing changed
UNDO_PHASES = {"rollback", "rollback_wait", "bg_abort", "bg_switch_back", "bg_flip",
               "canary_abort", "canary_abort_wait"}
