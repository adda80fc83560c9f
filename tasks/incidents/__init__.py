"""Alerts → incidents → rollback: Prometheus Alertmanager notifications become one GitLab
incident issue per alert group, correlated with the environment's recent deploys, and, where an
environment allows it, an automatic rollback through the same service and gates as
`/devops rollback`.

Modules: `intake` (what the receiver checks: authentication, the body's shape, the dedup key;
plain Python, the web process imports nothing else from here), `model` (the payload as the
worker reads it), `config` (the `incidents:` section), `mapping` (labels → project,
environment, severity), `store` (the incident's state in Redis), `render` (issue, comments,
post-mortem), `correlate` (which deploy came just before), `rollback` (the automatic rollback
and its follow-up) and `handler` (the registered handler).
"""
