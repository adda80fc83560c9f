"""Infrastructure from the thread: `/devops plan <env>` and `/devops apply <env>`.

Atlantis' plan/apply for Kubernetes manifests kept in the repository. A plan reads the files at
one SHA through the GitLab API (manifests.py), checks every object against the environment's
policy (policy.py), asks the API server for a server-side dry-run apply of each and diffs the
answer with the live object (diff.py, plan.py); the plan is stored (store.py) and answered in
the thread (render.py). An apply (apply.py) applies exactly that stored plan, only while the
ref still points at its SHA, behind the deploy gates and the deploy lock.
"""
