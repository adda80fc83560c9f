"""CI failures: what happens when a pipeline or job fails.

The handlers (pipeline_failed, job_failed, pipeline_passed, classify_labels) read the log,
classify it with the rules table (rules/), decide retries within budgets (triage), hand code
failures on as fix issues (fix_issue), learn from corrections, and propose pipeline fixes as
merge requests (pipeline_fix/). Linked issues and the one updatable comment live here too.
"""
