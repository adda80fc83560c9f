"""Prometheus metrics. Under gunicorn, PROMETHEUS_MULTIPROC_DIR makes them per-process files
that /metrics aggregates (see webhooks/gunicorn_conf.py)."""

from prometheus_client import Counter, Histogram

DELIVERIES = Counter("devops_agent_webhook_deliveries_total",
                     "Webhook deliveries by event and outcome", ["event", "outcome"])
VERIFICATION_FAILURES = Counter("devops_agent_webhook_verification_failures_total",
                                "Deliveries refused by token or signature checks", ["reason"])
ENQUEUE_SECONDS = Histogram("devops_agent_webhook_enqueue_seconds",
                            "Time to record, dedupe and enqueue one delivery",
                            buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1))
EVENTS_PROCESSED = Counter("devops_agent_events_processed_total",
                           "Deliveries processed by workers", ["kind", "outcome"])
DECISIONS = Counter("devops_agent_decisions_total", "Handler decisions", ["handler", "action"])
JOB_FAILURES = Counter("devops_agent_job_failures_total", "Failed jobs classified, by category",
                       ["category"])
CORRECTIONS = Counter("devops_agent_classification_corrections_total",
                      "Verdicts people corrected, by the category given and the one taught",
                      ["was", "now"])
EFFECTS_REFUSED = Counter("devops_agent_effects_refused_total",
                          "Side effects GitLab refused for good (403/404/409/422), by effect",
                          ["effect"])
WORK_ERRORS = Counter("devops_agent_work_errors_total",
                      "Errors raised by deliveries, deploy steps and jobs, by what they were "
                      "(transient: retried with back-off; permanent: finished with the reason; "
                      "bug: reported to Sentry)", ["kind", "error"])
ITEMS_FINISHED = Counter("devops_agent_engine_items_finished_total",
                         "Deploy steps, follow-on jobs and periodic passes finished, by kind and "
                         "status (dead = out of attempts)", ["kind", "status"])
RECONCILED = Counter("devops_agent_reconciled_total",
                     "Work found by the reconcile pass that no webhook had brought, by kind",
                     ["kind"])
