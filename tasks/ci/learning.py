"""People correct a verdict; devops-agent remembers it, shows it, and learns from it.

Both ways in (`/devops classify <category> [job]` and swapping the `ci-failure:` label) end in
`apply_correction`: the correction is kept per failure signature (the classifier's `learned`
layer uses it for the next failure like it), kept as a labelled example (for `rules suggest`
and `rules backtest`), audited, and the CI comment and labels are refreshed to say so.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.ci.corrections import Corrections
from tasks.ci.pipeline import FailedJob, PipelineRef
from tasks.ci.report import explain
from tasks.ci.triage import example_of
from tasks.platform import audit, metrics
from tasks.platform.store import Store

log = logging.getLogger("devops_agent.learning")


def failed_rows(store: Store, pipe: PipelineRef) -> list[dict[str, Any]]:
    return [r for r in store.job_rows(pipe.project, pipe.pipeline) if r.get("status") == "failed"]


def apply_correction(ctx: Any, pipe: PipelineRef, row: dict[str, Any], category: str, *,
                     by: str, user_id: int, where: str, still_failing: bool) -> None:
    """Remember that `row`'s failure is `category`, and refresh what the thread shows."""
    store = Store(ctx.redis)
    before = row["category"]
    job = FailedJob(row["job_id"], row["name"], row.get("stage", ""), row.get("failure_reason"))
    Corrections(ctx.redis).correct(row["signature"], category=category, by=by, where=where,
                                   example={**example_of(pipe, job, row), "classified_as": before})
    original = row.get("original_category") or before
    row = {**row, "category": category, "layer": "learned", "confidence": "high",
           "why": f"corrected to {category} by @{by} (devops-agent said {original})",
           "original_category": original}
    store.put_job_row(pipe.project, pipe.pipeline, row)
    audit.record(ctx.redis, project=pipe.project, project_path=pipe.project_path, where=where,
                 user=by, user_id=user_id, command=f"classify {category} {row['name']}",
                 action="classify", outcome="succeeded", job=row["job_id"], was=before,
                 signature=row["signature"])
    metrics.CORRECTIONS.labels(was=before, now=category).inc()
    ctx.decide("corrected", job=row["job_id"], was=before, now=category, by=by)
    if still_failing:
        explain(ctx, store, pipe, passed=False)
