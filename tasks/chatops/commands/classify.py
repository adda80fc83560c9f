"""`/devops classify <category> [job]`: correct the category of a failed job in this thread."""

from tasks.chatops.core import Invocation, command
from tasks.ci.learning import apply_correction, failed_rows
from tasks.ci.report import thread_pipeline
from tasks.ci.rules.table import CATEGORIES
from tasks.config.agent import ACCESS_LEVELS
from tasks.deploy.gates import access_level, check_access
from tasks.platform.handlers import CommandHelp

TEACHABLE = tuple(c for c in CATEGORIES if c != "unknown")


@command("classify", CommandHelp(
    usage="classify <category> [job]",
    description="Correct the category devops-agent gave a failed job of the pipeline reported "
                "in this thread; failures with the same signature get it from now on.",
    examples=("/devops classify network_error", "/devops classify test_failure unit-tests")))
def run(inv: Invocation) -> str:
    if not inv.args or len(inv.args) > 2:
        inv.reply("❌ usage: classify <category> [job]. Categories: " + ", ".join(TEACHABLE))
        return "usage"
    category = inv.args[0].lower()
    if category not in TEACHABLE:
        inv.reply(f"❌ unknown category `{category[:60]}`. Categories: " + ", ".join(TEACHABLE))
        return "unknown category"
    gate = check_access(access_level(inv.ctx.gitlab, inv.ctx.redis, inv.project, inv.user_id),
                        ACCESS_LEVELS["developer"], "classify")
    if not gate.passed:
        inv.audit("refused", gates=[gate.as_dict()])
        inv.reply(f"❌ refused by the **access** gate: {gate.detail}")
        return "refused"
    found = thread_pipeline(inv.ctx.redis, inv.project, inv.kind, inv.iid)
    if found is None:
        inv.reply("❌ no failed pipeline is reported in this thread, so there is nothing to "
                  "classify here.")
        return "no pipeline"
    pipe, passed_since = found
    rows = failed_rows(inv.store, pipe)
    if len(inv.args) == 2:
        rows = [r for r in rows if r["name"] == inv.args[1]]
        if not rows:
            inv.reply(f"❌ pipeline #{pipe.pipeline} has no failed job named `{inv.args[1][:80]}`.")
            return "no such job"
    elif len(rows) > 1:
        names = ", ".join(f"`{r['name']}`" for r in rows[:20])
        inv.reply(f"❌ pipeline #{pipe.pipeline} has {len(rows)} failed jobs ({names}); name one: "
                  f"`{inv.config.chatops.prefix} classify {category} <job>`.")
        return "which job"
    if not rows:
        inv.reply(f"❌ pipeline #{pipe.pipeline} has no failed job.")
        return "no failed job"
    row = rows[0]
    # The store says what we saw; GitLab says what is true now.
    job = inv.ctx.gitlab.get_job(inv.project, row["job_id"])
    if job.get("status") != "failed":
        inv.reply(f"❌ job `{row['name']}` (#{row['job_id']}) is {job.get('status')}, not failed: "
                  "there is no failure to classify.")
        return "not failed"
    if row["category"] == category:
        inv.reply(f"`{row['name']}` is already classified as `{category}`.")
        return "unchanged"
    where = f"{inv.project_path or inv.project}{'!' if inv.kind == 'mr' else '#'}{inv.iid}"
    was = row["category"]
    apply_correction(inv.ctx, pipe, row, category, by=inv.username or str(inv.user_id),
                     user_id=inv.user_id, where=where, still_failing=not passed_since)
    inv.reply(f"✅ `{row['name']}` is now `{category}` (devops-agent said `{was}`). Failures with "
              "the same signature will be classified as it from now on.")
    return "corrected"
