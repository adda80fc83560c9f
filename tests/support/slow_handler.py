"""A handler module loaded through EXTRA_HANDLER_MODULES in crash tests.

It makes a Deployment Hook for the environment "slow-crash-test" take a few seconds, and marks in
Redis when it starts, so a test can SIGKILL the worker while the task is provably in flight.
"""

import time

from tasks.platform.handlers import HelpRecord, handler


@handler("slow_test_handler", kinds=("deployment",),
         help=HelpRecord(description="test only: sleeps on environment slow-crash-test"))
def handle(event, ctx):
    if event.environment != "slow-crash-test":
        return None
    ctx.redis.incr(f"test:slow-started:{ctx.delivery_id}")
    time.sleep(3)
    return ctx.decide("slow-done")
