"""Failed pipelines: classify each failed job, then retry, hand off or explain."""

from __future__ import annotations

from tasks.handlers import HelpRecord, handler

HELP = HelpRecord(
    description="Classifies the failed jobs of a failed pipeline against the rules table, retries "
                "what is worth retrying within budgets, and explains every decision in one comment "
                "on the linked issues.",
)


@handler("pipeline_failed", kinds=("pipeline",), help=HELP)
def handle(event, ctx):
    status = event.object_attributes.status
    if status != "failed":
        return ctx.decide("skip", reason=f"pipeline status is {status}")
    failed = [b for b in event.builds if b.status == "failed" and not b.allow_failure]
    return ctx.decide("triage", pipeline=event.object_attributes.id,
                      failed_jobs=[b.id for b in failed])
