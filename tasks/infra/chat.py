"""The thread's side of plan and apply: who may, which environment and ref, the replies.

Every reply states only what GitLab or the API server confirmed; every refusal says why and
what to do next.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.config.agent import ACCESS_LEVELS
from tasks.config.environments import EnvironmentConfig
from tasks.deploy.gates import access_level, check_access, evaluate
from tasks.deploy.kube import KubeError
from tasks.deploy.stepper import kube_for
from tasks.deploy.store import DeployStore
from tasks.gitlab.client import GitLabError, NotFound
from tasks.infra.apply import apply_plan, lock_holder
from tasks.infra.manifests import ManifestError
from tasks.infra.plan import make_plan
from tasks.infra.render import apply_reply, full_plan, plan_reply
from tasks.infra.store import Plan, PlanStore

log = logging.getLogger("devops_agent.infra")


def _target(inv: Any, env: str) -> EnvironmentConfig | None:
    """The environment's config when it has manifests; otherwise replies why not."""
    cfg = inv.config.environments.get(env)
    if cfg is None:
        known = ", ".join(sorted(e for e, c in inv.config.environments.items() if c.manifests))
        inv.reply(f"❌ `{env[:60]}` has no Kubernetes target configured. Environments with "
                  f"manifests: {known or 'none'}.")
        return None
    if cfg.manifests is None:
        inv.reply(f"❌ `{env}` has no manifests configured: add `environments.{env}.manifests: "
                  "{path: <folder in the repository>}` to DEVOPS_AGENT_CONFIG.")
        return None
    return cfg


def _kube(cfg: EnvironmentConfig) -> Any:
    return kube_for(cfg)  # the deploy service's credentials, one place


def run_plan(inv: Any, env: str, ref: str | None) -> str:
    cfg = _target(inv, env)
    if cfg is None:
        return "refused: no manifests"
    assert cfg.manifests is not None
    level = access_level(inv.ctx.gitlab, inv.ctx.redis, inv.project, inv.user_id)
    gate = check_access(level, ACCESS_LEVELS[cfg.manifests.plan_access], env)
    if not gate.passed:
        inv.audit("refused", env=env, gates=[gate.as_dict()])
        inv.reply(f"❌ `plan {env}` refused by the **access** gate: {gate.detail}")
        return "refused: access"
    ref = ref or inv.default_ref()
    if not ref:
        inv.reply("❌ no ref to plan: name one (`plan <env> <branch or SHA>`).")
        return "refused: no ref"
    try:
        sha = inv.ctx.gitlab.resolve_ref(inv.project, ref)
    except NotFound:
        inv.reply(f"❌ `{ref[:100]}` is not a branch, tag or commit of this project.")
        return "refused: unknown ref"
    store = PlanStore(inv.ctx.redis)
    inv.reply(f"⏳ planning `{env}` at `{ref[:100]}` ({sha[:8]})…")
    kube = _kube(cfg)
    try:
        plan = make_plan(inv.ctx.gitlab, kube, store, project=inv.project, env=env, cfg=cfg,
                         ref=ref, sha=sha, planned_by=inv.username or str(inv.user_id))
    except ManifestError as exc:
        inv.audit("refused", env=env, ref=ref, sha=sha, problems=exc.problems)
        inv.reply(f"❌ cannot plan `{env}` at {sha[:8]}: the manifests were refused; nothing "
                  "was planned.\n\n" + "\n".join(f"- {p}" for p in exc.problems))
        return "refused: manifests"
    except KubeError as exc:
        inv.audit("failed", env=env, ref=ref, sha=sha, error=str(exc)[:300])
        inv.reply(f"❌ cannot plan `{env}`: the API server could not be asked ({str(exc)[:300]}); "
                  "nothing was planned.")
        return "failed: kube"
    finally:
        kube.close()
    text, truncated = plan_reply(plan, prefix=inv.config.chatops.prefix,
                                 ttl=cfg.manifests.plan_ttl)
    if truncated:
        link, error = _snippet(inv, plan)
        if link:
            plan.snippet_url = link
            store.save(plan, cfg.manifests.plan_ttl)
        text, _ = plan_reply(plan, prefix=inv.config.chatops.prefix, ttl=cfg.manifests.plan_ttl,
                             full_link=link, link_error=error)
    inv.audit("planned", env=env, ref=ref, sha=sha, plan=plan.id, digest=plan.digest,
              counts=plan.counts(), prune=len(plan.prune))
    inv.reply(text)
    return "planned"


def _snippet(inv: Any, plan: Plan) -> tuple[str | None, str | None]:
    """The full plan as a private project snippet: members who read the thread can open it,
    nobody else; no pipeline is needed to hold it, unlike a job artifact. Created once per
    plan (a redelivered plan finds the one it made)."""
    key = f"da:infra:snippet:{plan.id}"
    known = inv.ctx.redis.get(key)
    if known:
        return known.decode(), None
    try:
        made = inv.ctx.gitlab.create_snippet(
            inv.project, f"devops-agent plan {plan.id} for {plan.env}",
            [{"file_path": f"plan-{plan.env}-{plan.id}.md", "content": full_plan(plan)}])
    except GitLabError as exc:
        return None, str(exc)
    url = made.get("web_url")
    if not url:
        return None, "GitLab did not answer with the snippet's address (DRY_RUN?)"
    inv.ctx.redis.set(key, url, ex=30 * 86400)
    return str(url), None


def run_apply(inv: Any, env: str) -> str:
    cfg = _target(inv, env)
    if cfg is None:
        return "refused: no manifests"
    assert cfg.manifests is not None
    access = inv.config.env_access(env)
    if access is None:
        inv.reply(f"❌ `{env}` has no access rules (`access.{env}`), so nobody may apply to it.")
        return "refused: unknown environment"
    store = PlanStore(inv.ctx.redis)
    plan = store.load(inv.project, env)
    prefix = inv.config.chatops.prefix
    if plan is None:
        inv.reply(f"❌ no plan of `{env}` to apply (none was made, or it is older than "
                  f"{cfg.manifests.plan_ttl:g}s). Run `{prefix} plan {env}` first.")
        return "refused: no plan"
    try:
        now = inv.ctx.gitlab.resolve_ref(inv.project, plan.ref)
    except NotFound:
        now = None
    if now != plan.sha:
        inv.audit("refused", env=env, plan=plan.id, reason="ref moved", sha=plan.sha, now=now)
        where = f"is now at {now[:8]}" if now else "no longer exists"
        inv.reply(f"❌ plan `{plan.id}` is for `{plan.ref}` at {plan.sha[:8]}, but `{plan.ref}` "
                  f"{where}: a newer commit needs a new plan. Run `{prefix} plan {env}` and "
                  "apply that.")
        return "refused: ref moved"
    if plan.blocked:
        inv.reply(f"❌ plan `{plan.id}` cannot be applied: the API server refused "
                  f"{len(plan.blocked)} object(s) in its dry run ({plan.blocked[0]['key']}: "
                  f"{plan.blocked[0]['detail'][:200]}). Fix the manifests and plan again.")
        return "refused: blocked plan"
    if inv.ctx.settings.dry_run:
        inv.reply(f"❌ DRY_RUN is set: plan `{plan.id}` was not applied.")
        return "refused: dry run"
    # The deploy gates, at the apply's own access level, for the plan's ref: what they check
    # must be exactly the planned SHA.
    needed = max(access.min_level, ACCESS_LEVELS[cfg.manifests.apply_access])
    name = next(k for k, v in ACCESS_LEVELS.items() if v == needed)
    decision = evaluate(inv.ctx.gitlab, inv.ctx.redis, access.model_copy(update={"min_access": name}),
                        project=inv.project, env=env, ref=plan.ref, user_id=inv.user_id,
                        username=inv.username, force_reason=None, action="deploy",
                        noteable=inv.noteable, history=inv.ctx.deployer, env_config=cfg,
                        prefix=prefix)
    if not decision.allowed:
        refusing = decision.refusing()
        assert refusing is not None
        inv.audit("refused", env=env, plan=plan.id, gates=[g.as_dict() for g in decision.gates])
        inv.reply(f"❌ `apply {env}` refused by the **{refusing.name}** gate: {refusing.detail}")
        return f"refused: {refusing.name}"
    if decision.checked and decision.checked.sha != plan.sha:
        inv.reply(f"❌ the gates checked {decision.checked.sha[:8]} (pipeline "
                  f"#{decision.checked.pipeline}), not the planned {plan.sha[:8]}; wait for the "
                  f"pipeline of {plan.sha[:8]}, then apply.")
        return "refused: pipeline sha"
    prior = store.claim_apply(plan.id, inv.username or str(inv.user_id))
    resume = False
    if prior is not None:
        if prior.get("state") == "done":
            inv.reply(f"ℹ️ plan `{plan.id}` was already applied (by @{prior.get('by')}); nothing "
                      f"was sent again.\n\n" + apply_reply(plan, prior))
            return "already applied"
        locks = DeployStore(inv.ctx.redis)
        if locks.holder(str(inv.project), env) == lock_holder(plan):
            inv.reply(f"⏳ plan `{plan.id}` is being applied (by @{prior.get('by')}); its reply "
                      "will tell the outcome.")
            return "already applying"
        resume = True  # an earlier attempt died midway: read back before sending anything
    inv.reply(f"⏳ applying plan `{plan.id}` to `{env}` ({plan.sha[:8]})…")
    kube = _kube(cfg)
    try:
        result = apply_plan(kube, DeployStore(inv.ctx.redis), plan, cfg, resume=resume)
    except BaseException:
        if not resume:
            # nothing is known to have been sent: keep the claim so the next apply reads back
            log.warning("apply of plan %s stopped by an error", plan.id, exc_info=True)
        raise
    finally:
        kube.close()
    if result["outcome"] == "locked":
        store.release_apply(plan.id)
        inv.reply(f"❌ {result['headline']}")
        return "refused: locked"
    result["by"] = inv.username
    store.finish_apply(plan.id, result)
    store.set_inventory(inv.project, env, [{"api_version": o["api_version"], "kind": o["kind"],
                                            "plural": o["plural"]} for o in plan.objects])
    inv.audit("succeeded" if result["outcome"] == "applied" else "failed", env=env, plan=plan.id,
              sha=plan.sha, digest=plan.digest,
              objects=[{"key": r["key"], "status": r["status"]} for r in result["objects"]])
    inv.reply(apply_reply(plan, result))
    return result["outcome"]
