"""Failed jobs (Job Hook): the same triage as a failed pipeline, one job at a time."""

from __future__ import annotations

from tasks.handlers import HelpRecord, handler

HELP = HelpRecord(
    description="Triages a failed job as soon as it fails (Job Hook), without waiting for the "
                "whole pipeline; jobs allowed to fail are skipped.",
)


@handler("job_failed", kinds=("job",), help=HELP)
def handle(event, ctx):
    if event.build_status != "failed":
        return ctx.decide("skip", reason=f"job status is {event.build_status}")
    if event.build_allow_failure:
        return ctx.decide("skip", reason="job is allowed to fail")
    return ctx.decide("triage", job=event.build_id, failure_reason=event.build_failure_reason)
