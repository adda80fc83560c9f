"""What an issue or merge request shows about one environment while a request runs and when it
ended: its status label (one at a time) and its reply, serialised per thread and environment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.config.agent import AgentConfig
from tasks.deploy.store import DeployStore
from tasks.deploy.verdicts import Verdict


def status_lock(redis: Any, project: int | str, kind: str, iid: int, env: str) -> Any:
    """Serialises what one issue or MR shows about one environment (its replies' state and its
    status label): news written late never overwrites a verdict written meanwhile."""
    return DeployStore(redis).reply_lock(project, kind, iid, env, ttl=10.0, wait=30.0)


def in_progress(gitlab: Any, redis: Any, config: AgentConfig, project: int | str, kind: str,
                iid: int, env: str, text: str, reply: Callable[[str], Any], *,
                still_running: Callable[[], bool], trigger_label: str | None = None) -> bool:
    """A request is under way: its issue carries the `deploying` label (the environment's other
    status labels and the trigger label removed) and its reply says `text`, both only while
    `still_running()`. Once it ended, the worker that ended it writes the verdict instead."""
    labels = config.labels
    with status_lock(redis, project, kind, iid, env):
        if not still_running():
            if trigger_label:
                gitlab.remove_labels(project, kind, iid, [trigger_label])
            return False
        deploying = labels.name("deploying", env)
        gitlab.relabel(project, kind, iid, add=[deploying],
                       remove=[x for x in labels.status_labels(env) if x != deploying]
                       + ([trigger_label] if trigger_label else []))
        reply(f"🚀 {text}")
    return True


def progress(redis: Any, project: int | str, kind: str, iid: int, env: str, text: str,
             reply: Callable[[str], Any], *, still_running: Callable[[], bool]) -> bool:
    """News while a request runs (no label change), dropped once it has ended."""
    with status_lock(redis, project, kind, iid, env):
        if not still_running():
            return False
        reply(f"🚀 {text}")
    return True


def conclude(gitlab: Any, redis: Any, config: AgentConfig, project: int | str, kind: str,
             iid: int, env: str, done: Verdict, text: str, reply: Callable[[str], Any], *,
             trigger_label: str | None = None) -> None:
    """A verdict (tasks/deploy/verdicts.py): the status label it names replaces the
    environment's others (one at a time, on Free as on Premium), then the reply says `text`.
    Labels first: whoever waits for the verdict in the thread sees final labels."""
    labels = config.labels
    extra = [trigger_label] if trigger_label else []
    with status_lock(redis, project, kind, iid, env):
        if done.label:
            keep = labels.name(done.label, env)
            gitlab.relabel(project, kind, iid, add=[keep],
                           remove=[x for x in labels.status_labels(env) if x != keep] + extra)
        elif extra:
            gitlab.remove_labels(project, kind, iid, extra)
        reply(text)
