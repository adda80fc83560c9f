"""The pipeline_fixes: section: when repeated infrastructure failures of one job become a merge
request changing its CI configuration, and by how much.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tasks.config.base import StrictModel as _Model
from tasks.gitlab.durations import MAX_TIMEOUT, parse_duration

PIPELINE_FIX_CATEGORIES = ("runner_system_failure", "network_error", "job_timeout")
PIPELINE_FIX_KINDS = ("retry", "timeout")


class PipelineFixes(_Model):
    """Merge requests that change `.gitlab-ci.yml` when one job keeps failing for one
    infrastructure reason (tasks/pipeline_fix): `retry:` for runner and platform failures,
    a raised `timeout:` for jobs that run out of time."""

    enabled: bool = True
    # `threshold` failures of one job for one reason within `window_days` ask for a change.
    threshold: int = Field(3, ge=2, le=100)
    window_days: int = Field(1, ge=1, le=30)
    kinds: tuple[str, ...] = PIPELINE_FIX_KINDS
    categories: tuple[str, ...] = PIPELINE_FIX_CATEGORIES
    # GitLab's own cap for retry:max is 2.
    retry_max: int = Field(2, ge=1, le=2)
    # A timeout is raised by `timeout_step` at a time and never above `timeout_max`.
    timeout_step: str = "30m"
    timeout_max: str = "3h"
    # Raise a timeout only when passing runs of the job took at least this share of its limit:
    # a job that usually takes 5 minutes and then hits a 1 h limit hangs, and more time would
    # not help.
    near_limit: float = Field(0.8, gt=0, le=1)
    # A merge request someone closed is not proposed again for this long.
    closed_cooldown_days: int = Field(30, ge=1, le=365)
    labels: tuple[str, ...] = ("devops-agent", "ci-config")

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [k for k in v if k not in PIPELINE_FIX_KINDS]
        if unknown:
            raise ValueError(f"unknown kind(s) {', '.join(unknown)}; expected "
                             f"{', '.join(PIPELINE_FIX_KINDS)}")
        return v

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in v if c not in PIPELINE_FIX_CATEGORIES]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: only infrastructure categories "
                             f"({', '.join(PIPELINE_FIX_CATEGORIES)}) can be fixed in the CI "
                             "configuration; code failures never are")
        return v

    @field_validator("timeout_step", "timeout_max")
    @classmethod
    def _duration(cls, v: str) -> str:

        seconds = parse_duration(v)
        if seconds is None or seconds <= 0:
            raise ValueError("expected a duration such as '30m' or '1h 30m'")
        if seconds >= MAX_TIMEOUT:
            raise ValueError("GitLab's job timeout must stay under one month")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> PipelineFixes:

        if (parse_duration(self.timeout_step) or 0) > (parse_duration(self.timeout_max) or 0):
            raise ValueError("timeout_step is larger than timeout_max")
        return self

    @property
    def window_seconds(self) -> int:
        return self.window_days * 86400
