"""Intake: what the receiver needs to accept a delivery (event kinds, the inbox, signatures).

Kept free of pydantic, Celery and the GitLab client: the web process imports only this."""
