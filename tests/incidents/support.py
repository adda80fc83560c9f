"""Alertmanager notifications for tests, shaped as Alertmanager 0.27 sends them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert(name: str = "HighErrorRate", *, status: str = "firing", starts: float,
          ends: float | None = None, fingerprint: str = "a1b2c3d4e5f60708",
          severity: str = "critical", summary: str = "5xx above 5%",
          description: str = "", **labels: str) -> dict[str, Any]:
    return {"status": status,
            "labels": {"alertname": name, "severity": severity, **labels},
            "annotations": {"summary": summary, **({"description": description} if description else {})},
            "startsAt": iso(starts),
            "endsAt": iso(ends) if ends else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=rate%28x%5B5m%5D%29",
            "fingerprint": fingerprint}


def notification(*alerts: dict[str, Any], group_key: str = '{}:{alertname="HighErrorRate"}',
                 status: str | None = None, truncated: int = 0) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    common = dict(alerts[0]["labels"]) if alerts else {}
    return {"version": "4", "groupKey": group_key, "truncatedAlerts": truncated,
            "status": status or ("firing" if firing else "resolved"), "receiver": "devops-agent",
            "groupLabels": {"alertname": common.get("alertname", "")}, "commonLabels": common,
            "commonAnnotations": {}, "externalURL": "http://alertmanager.example:9093",
            "alerts": list(alerts)}
