"""The learning loop end to end: receiver → real Redis → real worker → fake GitLab over HTTP.

A failure no rule knows is explained as `unknown` with the lines to read; a person corrects it
with `/devops classify` or by swapping the `ci-failure:` label; the comment, the labels and the
audit trail say so; the next failure with the same signature gets the corrected category; and
`rules suggest` / `rules backtest` read what the service kept."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import orjson
import pytest

from tasks.ci.corrections import Corrections
from tasks.gitlab.client import GitLabAdapter
from tasks.intake.inbox import record_key
from tasks.platform import audit
from tests.support.hooks import note_hook
from tests.support.procs import ROOT, Stack, base_env, post_delivery, wait_until

PAYLOADS = ROOT / "fixtures" / "payloads"
PROJECT = 15
ALICE, RITA = 7, 9  # Developer, Reporter
ALICE_TOKEN = "alice-token-1234"
# A failure in a tool no rule knows, as GitLab's runner writes the trace.
WIDGET_LOG = ("Running with gitlab-runner 17.4.0 (b92ee590)\n"
              "\x1b[32;1m$ ./ci/widget-check --strict\x1b[0;m\n"
              "checking 14 widgets\n"
              "widget 'cart' exploded: cannot continue past stage 3\n"
              "\x1b[31;1mERROR: Job failed: exit code 3\x1b[0;m\n")


@pytest.fixture(scope="module")
def stack(redis_server, fake_gitlab_process, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("learning")
    env = base_env(redis_server.client_url(), GITLAB_URL=fake_gitlab_process.url,
                   GITLAB_TOKEN=fake_gitlab_process.token, GITLAB_PROJECTS="acme/*")
    stack = Stack(env, tmp)
    yield {"url": stack.url, "env": env}
    stack.close()


@pytest.fixture
def gl(stack, fake_gitlab_proc, redis_client):
    fake = fake_gitlab_proc
    fake.add_user("dev-alice", id=ALICE, token=ALICE_TOKEN)
    fake.add_user("rep-rita", id=RITA)
    fake.add_project("acme/shop", id=PROJECT, members={ALICE: 30, RITA: 20})
    fake.add_issue(PROJECT, "Checkout fails", iid=42)
    fake.add_mr(PROJECT, "Fix checkout", "42-fix-checkout", iid=7, description="Closes #42")
    add_failed_pipeline(fake, 1201, 9202)
    fake.clear_calls()
    return fake


def add_failed_pipeline(fake, pipeline: int, job: int, trace: str = WIDGET_LOG, **trace_kw) -> None:
    fake.add_pipeline(PROJECT, id=pipeline, ref="42-fix-checkout", status="failed", jobs=[
        {"id": job, "name": "widgets", "stage": "check", "status": "failed",
         "failure_reason": "script_failure"}])
    fake.set_trace(job, **(trace_kw or {"text": trace}))


def send(stack, redis_client, payload: dict, event: str) -> None:
    r = post_delivery(stack["url"], orjson.dumps(payload), event, key=str(uuid.uuid4()))
    assert r.status_code == 202, r.text
    delivery_id = r.json()["delivery_id"]
    wait_until(lambda: redis_client.hget(record_key(delivery_id), "status") == b"done",
               timeout=30, what="the delivery to be processed")


def pipeline_hook(pipeline: int, job: int) -> dict:
    payload = orjson.loads((PAYLOADS / "pipeline_failed.json").read_bytes())
    payload["object_attributes"].update(id=pipeline)
    payload["builds"] = [{"id": job, "stage": "check", "name": "widgets", "status": "failed",
                          "failure_reason": "script_failure", "allow_failure": False}]
    return payload


def command(gl, text: str, user_id: int = ALICE, username: str = "dev-alice") -> dict:
    return note_hook(gl, PROJECT, 42, text, user_id, username)


def adapter(fake) -> GitLabAdapter:
    return GitLabAdapter(fake.url, fake.token)


def ci_comment(fake) -> str:
    [note] = [n["body"] for n in adapter(fake).list_notes(PROJECT, "issue", 42)
              if "devops-agent:ci:" in n["body"]]
    return note


def replies(fake) -> list[str]:
    return [n["body"] for n in adapter(fake).list_notes(PROJECT, "issue", 42)
            if "devops-agent:cmd:" in n["body"]]


def labels(fake) -> list[str]:
    return adapter(fake).get_issue(PROJECT, 42)["labels"]


def test_unknown_then_corrected_then_learned(stack, gl, redis_client):
    send(stack, redis_client, pipeline_hook(1201, 9202), "Pipeline Hook")
    body = ci_comment(gl)
    assert "| widgets | check | unknown (low) |" in body
    assert "widget 'cart' exploded: cannot continue past stage 3" in body  # the line to read
    assert "ci-failure:unknown" in labels(gl)
    assert [e["job"] for e in Corrections(redis_client).examples("unknown")] == [9202]

    send(stack, redis_client, command(gl, "/devops classify network_error"), "Note Hook")
    [reply] = replies(gl)
    assert "✅ `widgets` is now `network_error` (devops-agent said `unknown`)" in reply
    body = ci_comment(gl)
    assert "network_error" in body and "corrected by a person" in body
    assert "ci-failure:network_error" in labels(gl) and "ci-failure:unknown" not in labels(gl)
    [entry] = [e for e in audit.query(redis_client) if e["action"] == "classify"]
    assert (entry["user"], entry["was"], entry["outcome"]) == ("dev-alice", "unknown", "succeeded")

    # The same failure again, in a new pipeline: recognised from the correction.
    add_failed_pipeline(gl, 1202, 9302)
    send(stack, redis_client, pipeline_hook(1202, 9302), "Pipeline Hook")
    body = ci_comment(gl)
    assert "#1202" in body and "| widgets | check | network_error (high) |" in body
    assert "corrected to network_error by @dev-alice" in body


@pytest.mark.parametrize("text, user, expected", [
    ("/devops classify bogus_kind", (ALICE, "dev-alice"), "unknown category `bogus_kind`"),
    ("/devops classify network_error", (RITA, "rep-rita"), "refused by the **access** gate"),
    ("/devops classify network_error nosuchjob", (ALICE, "dev-alice"), "no failed job named `nosuchjob`"),
    ("/devops classify", (ALICE, "dev-alice"), "usage: classify <category> [job]"),
])
def test_bad_corrections_are_refused_with_a_reason(stack, gl, redis_client, text, user, expected):
    send(stack, redis_client, pipeline_hook(1201, 9202), "Pipeline Hook")
    before = ci_comment(gl)
    send(stack, redis_client, command(gl, text, *user), "Note Hook")
    [reply] = replies(gl)
    assert expected in reply
    assert ci_comment(gl) == before and "ci-failure:unknown" in labels(gl)
    assert list(Corrections(redis_client).examples("corrected")) == []


def test_a_job_that_is_no_longer_failed_cannot_be_classified(stack, gl, redis_client):
    send(stack, redis_client, pipeline_hook(1201, 9202), "Pipeline Hook")
    gl.set_job_status(9202, "success")  # retried by hand and passed: GitLab says so now
    send(stack, redis_client, command(gl, "/devops classify network_error"), "Note Hook")
    [reply] = replies(gl)
    assert "is success, not failed" in reply
    assert list(Corrections(redis_client).examples("corrected")) == []


def test_swapping_the_category_label_is_a_correction(stack, gl, redis_client):
    send(stack, redis_client, pipeline_hook(1201, 9202), "Pipeline Hook")
    # Alice swaps the label in GitLab's UI (her own token), then GitLab sends the Issue Hook.
    GitLabAdapter(gl.url, ALICE_TOKEN).relabel(PROJECT, "issue", 42, add=["ci-failure:test_failure"],
                                               remove=["ci-failure:unknown"])
    hook = orjson.loads((PAYLOADS / "issue_labels_changed.json").read_bytes())
    hook["user"] = {**hook["user"], "id": ALICE, "username": "dev-alice"}
    hook["changes"]["labels"] = {"previous": [{"id": 1, "title": "ci-failure:unknown"}],
                                 "current": [{"id": 2, "title": "ci-failure:test_failure"}]}
    send(stack, redis_client, hook, "Issue Hook")
    assert "| widgets | check | test_failure (high) |" in ci_comment(gl)
    [example] = Corrections(redis_client).examples("corrected")
    assert (example["category"], example["by"], example["job"]) == ("test_failure", "dev-alice", 9202)


def test_a_forged_label_swap_is_ignored(stack, gl, redis_client):
    # The hook claims Alice swapped the label, but GitLab's label events say nobody did.
    send(stack, redis_client, pipeline_hook(1201, 9202), "Pipeline Hook")
    hook = orjson.loads((PAYLOADS / "issue_labels_changed.json").read_bytes())
    hook["user"] = {**hook["user"], "id": ALICE, "username": "dev-alice"}
    hook["changes"]["labels"] = {"previous": [{"id": 1, "title": "ci-failure:unknown"}],
                                 "current": [{"id": 2, "title": "ci-failure:test_failure"}]}
    send(stack, redis_client, hook, "Issue Hook")
    assert "unknown (low)" in ci_comment(gl)
    assert list(Corrections(redis_client).examples("corrected")) == []


@pytest.mark.parametrize("trace", [
    {"size": 40 * 1024 * 1024, "tail": WIDGET_LOG, "line": "compiling module 1234 ... ok\n"},
    {"text": "\x00\x01\x02\xff" * 50_000 + WIDGET_LOG},
], ids=["40MB", "binary"])
def test_huge_and_binary_logs_are_classified_from_their_tail(stack, gl, redis_client, trace):
    gl.set_trace(9202, **trace)
    send(stack, redis_client, pipeline_hook(1201, 9202), "Pipeline Hook")
    assert "widget 'cart' exploded" in ci_comment(gl)


def test_suggest_and_backtest_read_what_the_service_kept(stack, gl, redis_client, tmp_path):
    for pipeline, job in ((1201, 9202), (1203, 9402)):
        if pipeline != 1201:
            add_failed_pipeline(gl, pipeline, job, WIDGET_LOG.replace("'cart'", "'checkout'"))
        send(stack, redis_client, pipeline_hook(pipeline, job), "Pipeline Hook")
    send(stack, redis_client, command(gl, "/devops classify test_failure widgets"), "Note Hook")
    env = {**stack["env"], "DEVOPS_AGENT_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "tasks.cli.main", "rules", "suggest", "--format", "json"],
                         env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    [proposal] = json.loads(run.stdout)["proposals"]
    assert proposal["category"] == "test_failure" and proposal["category_source"] == "corrected"
    assert sorted(e["job"] for e in proposal["examples"]) == [9202, 9402]

    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("version: 1\nrules:\n" + "\n".join(
        "  " + line for line in _rule_yaml(proposal).splitlines()) + "\n")
    gl.add_pipeline(PROJECT, id=1300, ref="main", status="success", jobs=[
        {"id": 9500, "name": "widgets", "stage": "check", "status": "success"}])
    gl.set_trace(9500, text="checking 14 widgets\nall widgets fine\nJob succeeded\n")
    argv = [sys.executable, "-m", "tasks.cli.main", "rules", "backtest", str(candidate),
            "--project", "acme/shop", "--since", "1d", "--format", "json"]
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["failed_jobs"] >= 2 and report["passed_jobs"] == 1
    stats = report["rules"][proposal["id"]]
    assert stats["failed_wins"] >= 2 and stats["passed_hits"] == 0 and stats["agree"] >= 1
    traces = len(gl.calls(path_re=r"/jobs/\d+/trace$"))
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0 and len(gl.calls(path_re=r"/jobs/\d+/trace$")) == traces  # cached


def _rule_yaml(proposal: dict) -> str:
    import yaml

    return yaml.safe_dump([{"id": proposal["id"], "category": proposal["category"],
                            "match": {"log": [proposal["pattern"]]}, "reaction": "fix"}])
