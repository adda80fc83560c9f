"""Deploys, rollbacks and promotes on Kubernetes.

What happens on `/devops deploy`, a `deploy::<env>` label or a passed pipeline, in one place:
`requests.py` (the one `DeployRequest`, from ChatOps to the service) → `gates.py` (who may,
freezes, approvals, the manual lock, the checked SHA) → `driver.py` (the request gets a handle
and becomes a deploy record, stepped by the engine, reported to GitLab) → `service.py` (start,
rollback, promote, status) on `stepper.py` (the state machine's `advance`), with the phases in
`strategies/` (one module per strategy), `rollout.py`, `checks.py`, `revisions.py` (rollback
targets, revision listings, what runs now) and `report.py` (verdict words, post-mortems);
`model.py` (records, holds, errors), `store.py` (records and what holds an environment: a deploy
or a manual lock), `keys.py` (every key, under `da:deploy:`, and the move of the old ones),
`verdicts.py` (how each request ended, and its label), `kube.py` (the Kubernetes client adapter)
and `deployment_hook.py` (GitLab Deployment hooks, kept as history). Importing this package does
not import the `kubernetes` client (the adapter loads it lazily).
"""
