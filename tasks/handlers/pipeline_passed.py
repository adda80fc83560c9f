"""Passed pipelines: update earlier failure comments and flip the CI labels."""

from __future__ import annotations

from tasks.handlers import HelpRecord, handler

HELP = HelpRecord(
    description="When a later pipeline for the same ref passes, the failure comment says so and "
                "the labels flip to the passed label; jobs that passed on retry are recorded as flaky.",
)


@handler("pipeline_passed", kinds=("pipeline",), help=HELP)
def handle(event, ctx):
    status = event.object_attributes.status
    if status != "success":
        return ctx.decide("skip", reason=f"pipeline status is {status}")
    return ctx.decide("passed", pipeline=event.object_attributes.id, ref=event.object_attributes.ref)
