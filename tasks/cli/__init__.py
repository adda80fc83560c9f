"""The `devops-agent` command line: serve, worker, web, replay, audit, classify, rules, docs.

`python -m tasks.cli` is the same as the `devops-agent` entry point.
"""
