"""GitLab's event names: the X-Gitlab-Event header and the body's `object_kind`, mapped to the
event kinds handlers register for. Plain dicts, so the receiver answers without loading pydantic."""

from __future__ import annotations

# X-Gitlab-Event header -> our event kind, and the `object_kind` GitLab puts in the body.
EVENT_KINDS: dict[str, str] = {
    "Pipeline Hook": "pipeline",
    "Job Hook": "job",
    "Merge Request Hook": "merge_request",
    "Issue Hook": "issue",
    "Confidential Issue Hook": "issue",
    "Note Hook": "note",
    "Confidential Note Hook": "note",
    "Deployment Hook": "deployment",
}
OBJECT_KINDS: dict[str, str] = {
    "pipeline": "pipeline",
    "build": "job",
    "merge_request": "merge_request",
    "issue": "issue",
    "note": "note",
    "deployment": "deployment",
}
# object_kind in the body -> the X-Gitlab-Event GitLab sends with it
HEADER_FOR_OBJECT_KIND: dict[str, str] = {
    "pipeline": "Pipeline Hook", "build": "Job Hook", "merge_request": "Merge Request Hook",
    "issue": "Issue Hook", "note": "Note Hook", "deployment": "Deployment Hook",
}


def kind_of(event_header: str) -> str | None:
    """Our event kind for an X-Gitlab-Event header, or None for kinds we do not handle."""
    return EVENT_KINDS.get(event_header.strip())


# Alertmanager notifications come through their own endpoint and authentication, never as an
# X-Gitlab-Event: a GitLab hook secret cannot send one, nor an Alertmanager token a GitLab hook.
ALERTMANAGER_EVENT = "Alertmanager Webhook"
ALERT_KIND = "alert"
