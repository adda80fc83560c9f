"""The worker's housekeeping loop: re-enqueue acknowledged deliveries that no worker finished
(see tasks/inbox.py for why), and send the next step of every deploy that is due."""

from __future__ import annotations

import logging
import threading

from tasks.settings import Settings

log = logging.getLogger("devops_agent.reaper")


def start_reaper(settings: Settings, interval: float | None = None) -> threading.Thread:
    from tasks.chatops.kube_deployer import send_due
    from tasks.runtime import build_runtime

    rt = build_runtime(settings)
    # Look a few times per redelivery window, so a lost task is back within ~1.3x of it.
    period = interval or max(0.2, min(5.0, settings.redeliver_after_seconds / 3))

    def loop() -> None:
        while True:
            try:
                requeued = rt.inbox.reap()
                send_due(rt.redis)  # deploys whose next step is due
                if requeued:
                    log.warning("re-enqueued %d unfinished deliveries", len(requeued),
                                extra={"delivery_ids": requeued[:20]})
            except Exception:  # noqa: BLE001 - keep reaping; Redis may be restarting
                log.warning("reaper pass failed", exc_info=True)
            threading.Event().wait(period)

    thread = threading.Thread(target=loop, name="inbox-reaper", daemon=True)
    thread.start()
    return thread
