"""CI failures: what happens when a pipeline or job fails.

The handlers (pipeline_failed, job_failed, pipeline_passed, classify_labels) read the log,
classify it with the rules table (rules/), decide retries within budgets (triage), hand code
failures on as fix issues (fix_issue), learn from corrections, and propose pipeline fixes as
merge requests (pipeline_fix/). The pipeline acted on (pipeline), linked issues (linking) and the
one updatable failure comment (report) live here too.
"""
