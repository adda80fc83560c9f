"""request_action over the recording GitLab and a real Redis: the SHA the gates checked is the
SHA that ships, even when a push lands while the gates run."""

from __future__ import annotations

from tasks.chatops.core import Invocation, request_action
from tasks.config.agent import AgentConfig, EnvAccess
from tasks.config.settings import load_settings
from tasks.deploy.requests import Ticket
from tasks.gitlab.facts import noteable_facts
from tasks.worker.context import HandlerContext
from tests.support.recording_gitlab import RecordingGitLab


class RecordingDeployer:
    """A recording fake of the deploy service's entry point (tests only)."""

    def __init__(self) -> None:
        self.requests = []

    def submit(self, request):
        self.requests.append(request)
        return Ticket("queued", "started", "staging-1")

    def active(self, deploy_id):
        return True

    def succeeded_shas(self, project, env, limit=50):
        return []

    def last_succeeded(self, project, env):
        return None


class PushDuringGates(RecordingGitLab):
    """A push (and its pipeline) lands right after the gates read the ref's latest pipeline."""

    pushed = False

    def latest_pipeline(self, project, ref):
        found = super().latest_pipeline(project, ref)
        if not self.pushed:
            self.pushed = True
            self.add_pipeline(15, ref=ref, sha="9" * 40, status="success",
                              jobs=[{"name": "build", "status": "success"}])
        return found


def _setup(gl):
    gl.add_project("acme/shop", id=15)
    gl.state.add_user("dev", id=7)
    gl.add_member(15, 7, 30)
    gl.add_issue(15, 42, "ship")
    gl.add_pipeline(15, ref="main", sha="1" * 40, status="success",
                    jobs=[{"name": "build", "status": "success"}])


def _invocation(redis_client, gl, deployer):
    settings = load_settings({"GITLAB_PROJECTS": "acme/*"}, require_secret=False)
    config = AgentConfig(access={"staging": EnvAccess(require_pipeline_success=True)},
                         environments={"staging": object()})
    ctx = HandlerContext(settings=settings, redis=redis_client, gitlab=gl, config=config,
                         deployer=deployer)
    return Invocation(ctx=ctx, config=config, project=15, project_path="acme/shop",
                      default_branch="main", kind="issue", iid=42, user_id=7, username="dev",
                      name="deploy", args=("staging",), line="/devops deploy staging",
                      subject="cmd:1:0", noteable=noteable_facts(gl, 15, "issue", 42))


def test_a_push_while_the_gates_run_does_not_ship_unchecked(redis_client):
    gl = PushDuringGates()
    _setup(gl)
    deployer = RecordingDeployer()
    assert request_action(_invocation(redis_client, gl, deployer), "deploy", "staging") == "queued"
    [request] = deployer.requests
    assert request.sha == "1" * 40  # what the pipeline gate checked, not the newer push
    assert gl.pushed
    assert sum(1 for c in gl.calls if c[0] == "latest_pipeline") == 1


def test_no_target_refuses_before_any_label_moves(redis_client):
    gl = RecordingGitLab()
    _setup(gl)
    deployer = RecordingDeployer()
    inv = _invocation(redis_client, gl, deployer)
    inv.config = AgentConfig(access={"staging": EnvAccess()})
    inv.ctx.config = inv.config
    assert request_action(inv, "deploy", "staging") == "refused: no target"
    assert deployer.requests == []
    assert not any(":label_added:" in e for e in gl.effects)
    [note] = gl.notes[("acme/shop", "issue", 42)]
    assert "no target configured for `staging`" in note["body"]
