"""An Alertmanager notification as the worker reads it (the receiver checked it already with
`intake.validate`; this is the typed view, refused with the field's path if it drifted)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _zero_is_none(v: datetime | None) -> datetime | None:
    # Alertmanager's "not set" is the zero time, 0001-01-01T00:00:00Z.
    return None if v is None or v.year <= 1 else v


class Alert(_Model):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str

    _ends = field_validator("ends_at")(classmethod(lambda cls, v: _zero_is_none(v)))

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "alert")


class AlertGroupEvent(_Model):
    kind: Literal["alert"] = "alert"
    version: Literal["4"]
    group_key: str = Field(alias="groupKey")
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    truncated_alerts: int = Field(0, ge=0, alias="truncatedAlerts")
    alerts: list[Alert] = Field(min_length=1)
