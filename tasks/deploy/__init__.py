"""Deploys, rollbacks and promotes on Kubernetes.

What happens on `/devops deploy`, a `deploy::<env>` label or a passed pipeline, in one place:
`requests.py` (what ChatOps asks for) → `gates.py` (who may, freezes, approvals, the checked
SHA) → `driver.py` (the request becomes a deploy record, stepped by the engine, reported to
GitLab) → `service.py` (the state machine) with one module per strategy concern
(`strategies.py`, `rollout.py`, `checks.py`), `store.py` (records and locks), `verdicts.py` (how
each request ended, and its label), `kube.py` (the Kubernetes client adapter) and
`deployment_hook.py` (GitLab Deployment hooks, kept as history). Importing this package does not
import the `kubernetes` client (the adapter loads it lazily).
"""
