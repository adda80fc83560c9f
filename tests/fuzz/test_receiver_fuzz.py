"""Fuzzing the receiver with hostile deliveries that carry a valid token, with signing on.

Whatever arrives, the answer is below 500 and is a JSON object with `status`, and no secret (a
token, the signing key in any form) shows in a log line or a Sentry event. Two parts:

* the bulk through Flask's test client: every header we read and every field of the body we read,
  with wrong types, huge or deeply nested values, and valid signatures over all of it;
* raw bytes over a socket to a real gunicorn (webhooks/worker.py): request lines, header lines and
  framing that no client library would send: malformed, truncated and pipelined chunked bodies,
  contradicting lengths, bare LFs, NULs, folded lines.

Bounded for CI (derandomized, a few hundred examples, well under a minute). Locally:
    FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/fuzz -q --hypothesis-show-statistics
(FUZZ_EXAMPLES sets the test-client examples, a tenth of it the raw ones, and turns on random
exploration; FUZZ_SEED=n makes such a run repeatable.)
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import time

import orjson
import pytest
import redis as redis_lib
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tasks.config.settings import load_settings, signing_key_forms
from tasks.intake.signing import signature_header
from tests.receiver.raw import exchange
from tests.support.procs import base_env, start_web
from tests.support.sentry_transport import Recording

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
RANDOM = EXAMPLES > 0
CLIENT_EXAMPLES = EXAMPLES or 300
RAW_EXAMPLES = max(EXAMPLES // 10, 80) if EXAMPLES else 80
SEED = os.environ.get("FUZZ_SEED")

GLOBAL = "fuzz-global-secret-1"
BOUND = "fuzz-acme-group-secret"
BOUND_ID = "fuzz-project-77-secret"
KEY = bytes(range(100, 132))
SIGNING = "whsec_" + base64.b64encode(KEY).decode()
GITLAB_URL = "https://gitlab.fuzz.example"
DSN = "https://public@sentry.invalid/1"
SECRETS_YAML = f"acme/*: [{BOUND}]\n\"77\": {BOUND_ID}\n"
FORBIDDEN = [*signing_key_forms(SIGNING), GLOBAL, BOUND, BOUND_ID]

EVENTS = ["Pipeline Hook", "Job Hook", "Merge Request Hook", "Issue Hook", "Note Hook",
          "Deployment Hook", "Confidential Note Hook", "Push Hook", "System Hook"]
KINDS = ["pipeline", "build", "merge_request", "issue", "note", "deployment", "push"]


def fuzz_settings(n: int):
    kw = dict(max_examples=n, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    if SEED is not None:
        return settings(**kw, derandomize=False), int(SEED)
    return settings(**kw, derandomize=not RANDOM), None


def seeded(n: int):
    s, seed = fuzz_settings(n)

    def wrap(f):
        f = s(f)
        if seed is not None:
            from hypothesis import seed as hseed

            f = hseed(seed)(f)
        return f
    return wrap


# -- values -----------------------------------------------------------------------------------

json_scalar = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_any = st.recursive(json_scalar, lambda c: st.lists(c, max_size=4)
                        | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=12)
# header values as a server can deliver them: latin-1, no CR/LF
header_text = st.text(st.characters(min_codepoint=0, max_codepoint=0xFF,
                                    blacklist_characters="\r\n"), max_size=60)
paths = st.sampled_from(["acme/shop", "acme/sub/web", "other/thing", "ACME/x", "", "acme",
                         "acme/" + "a" * 300]) | st.text(max_size=40)


def dumps(value, ascii_only: bool = False) -> bytes:
    # the standard library's: it writes integers of any size (orjson refuses past 64 bits)
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def pick(draw, common: list, rare):
    """One of `common` most of the time (repeat an entry to weigh it), else a draw of `rare`."""
    choice = draw(st.sampled_from([*common, "<rare>"]))
    return draw(rare) if choice == "<rare>" else choice


@st.composite
def payloads(draw) -> bytes:
    """A body: a JSON object with every field the receiver reads, of any type; or not JSON."""
    shape = draw(st.sampled_from(["object"] * 6 + ["json", "bytes", "nested", "empty"]))
    if shape == "json":
        return dumps(draw(json_any))
    if shape == "bytes":
        return draw(st.binary(max_size=300))
    if shape == "nested":
        n = draw(st.integers(1, 5000))
        opener = draw(st.sampled_from([b"[", b'{"a":']))
        closer = b"]" if opener == b"[" else b"}"
        return opener * n + b"1" + closer * n
    if shape == "empty":
        return b""
    body: dict = {}
    if draw(st.booleans()):
        body["object_kind"] = pick(draw, ["pipeline"] * 4 + KINDS, json_any)
    project = draw(st.sampled_from(["dict", "dict", "none", "missing", "weird"]))
    if project == "dict":
        p = {}
        if draw(st.booleans()):
            p["path_with_namespace"] = pick(draw, ["acme/shop"] * 3, paths | json_any)
        if draw(st.booleans()):
            p["id"] = pick(draw, [15, 77, 15, 77, 0, -1, 2**63], json_any)
        body["project"] = p
    elif project == "none":
        body["project"] = None
    elif project == "weird":
        body["project"] = draw(json_any)
    if draw(st.booleans()):
        body["project_id"] = pick(draw, [15, 77, 77], json_any)
    if draw(st.booleans()):
        body["object_attributes"] = draw(json_any)
    if draw(st.sampled_from([False] * 9 + [True])):
        body["padding"] = "x" * draw(st.integers(0, 300_000))  # huge strings
    raw = dumps(body, ascii_only=draw(st.booleans()))
    cut = draw(st.sampled_from(["whole"] * 8 + ["truncated", "garbage"]))
    if cut == "truncated":
        return raw[:draw(st.integers(0, len(raw)))]
    if cut == "garbage":
        return raw + draw(st.binary(min_size=1, max_size=20))
    return raw


@st.composite
def deliveries(draw) -> tuple[bytes, dict[str, str]]:
    body = draw(payloads())
    h: dict[str, str] = {}
    event = pick(draw, ["Pipeline Hook"] * 6 + EVENTS, header_text)
    if draw(st.sampled_from([True] * 19 + [False])):  # (the first entry is drawn most)
        h["X-Gitlab-Event"] = event
    token = pick(draw, [GLOBAL] * 5 + [BOUND] * 3 + [BOUND_ID] * 2 + ["missing", ""], header_text)
    if token != "missing":
        h["X-Gitlab-Token"] = token
    ctype = pick(draw, ["application/json"] * 10 + [
        "application/json; charset=utf-8", "APPLICATION/JSON", "text/plain", "", "missing",
        "application/json; charset=\x00"], header_text)
    if ctype != "missing":
        h["Content-Type"] = ctype
    if draw(st.booleans()):
        h["Idempotency-Key"] = pick(draw, ["k" * 5000], header_text)
    instance = pick(draw, ["missing"] * 12 + [GITLAB_URL] * 3 + [
        GITLAB_URL + ":443/x", "http://gitlab.fuzz.example", ""], header_text)
    if instance != "missing":
        h["X-Gitlab-Instance"] = instance
    sig = draw(st.sampled_from(["valid"] * 14 + ["missing", "garbage", "stale", "other-body",
                                                 "rotation", "weird-stamp"]))
    msg_id = pick(draw, ["msg-1"] * 3, header_text.filter(bool))
    now = int(time.time())
    if sig != "missing":
        stamp = {"stale": str(now - 1000),
                 "weird-stamp": pick(draw, ["9" * 400, "-5", "1e9", "١٢٣", ""], header_text),
                 }.get(sig, str(now))
        h["webhook-id"] = msg_id
        h["webhook-timestamp"] = stamp
        try:
            good = signature_header(KEY, msg_id, stamp, body)
        except UnicodeEncodeError:
            good = "v1,AAAA"
        h["webhook-signature"] = {
            "garbage": draw(header_text),
            "other-body": signature_header(KEY, "msg-1", stamp, body + b"x"),
            "rotation": "v1,AAAA v2,BBBB " + good,
        }.get(sig, good)
    return body, h


# -- the test client ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def receiver(redis_server, tmp_path_factory):
    import sentry_sdk

    from tasks.platform.sentry import init_sentry
    from webhooks.app import create_app

    path = tmp_path_factory.mktemp("fuzz") / "secrets.yaml"
    path.write_text(SECRETS_YAML)
    env = {"WEBHOOK_SECRET": GLOBAL, "WEBHOOK_SECRETS_FILE": str(path),
           "WEBHOOK_SIGNING_KEY": SIGNING, "GITLAB_URL": GITLAB_URL,
           "REDIS_URL": redis_server.client_url(), "MAX_BODY_BYTES": "200000"}
    s = load_settings({**env, "SENTRY_DSN": DSN})
    app = create_app(load_settings(env))  # Sentry is initialised below, with the same settings
    transport = Recording()
    init_sentry(s, "web", transport=transport, auto_enabling_integrations=False)
    lines = io.StringIO()
    root = logging.getLogger()
    handler = root.handlers[0]  # the one configure_logging installed, with its formatter
    old = handler.setStream(lines)
    client = redis_lib.Redis.from_url(redis_server.client_url())
    client.flushall()
    state = {"client": app.test_client(), "lines": lines, "transport": transport,
             "redis": client, "n": 0}
    yield state
    handler.setStream(old)
    client.flushall()
    client.close()
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)  # (not init(): see test_observability)


def assert_no_secrets(text: str, where: str) -> None:
    for form in FORBIDDEN:
        assert orjson.dumps(form).decode()[1:-1] not in text and form not in text, \
            f"a secret in its form {form[:4]}... appears in {where}"


@seeded(CLIENT_EXAMPLES)
@given(deliveries())
def test_hostile_deliveries_get_json_4xx_never_5xx(receiver, delivery):
    body, headers = delivery
    r = receiver["client"].post("/webhooks/gitlab", data=body, headers=headers)
    event(f"status {r.status_code}")
    assert r.status_code < 500, (r.status_code, r.data[:300])
    answer = orjson.loads(r.data)
    assert isinstance(answer, dict) and "status" in answer, r.data[:300]
    event(f"outcome {answer['status']}: {answer.get('error', '')[:40]}")
    receiver["n"] += 1
    if receiver["n"] % 200 == 0:
        receiver["redis"].flushall()  # 20,000 examples would otherwise fill it


def test_nothing_secret_was_logged_or_sent_to_sentry(receiver):
    """Runs after the fuzz test above (same module): everything it logged and captured."""
    import sentry_sdk

    sentry_sdk.flush()
    logged = receiver["lines"].getvalue()
    assert receiver["n"] == 0 or logged, "the fuzz run logged nothing"
    assert_no_secrets(logged, "a log line")
    assert_no_secrets(orjson.dumps(receiver["transport"].events, default=str).decode(),
                      "a Sentry event")
    assert '"level":"error"' not in logged, [l for l in logged.splitlines() if "error" in l][:3]


# -- raw bytes against a real gunicorn ----------------------------------------------------------

@pytest.fixture(scope="module")
def server(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-web")
    (tmp / "secrets.yaml").write_text(SECRETS_YAML)
    env = base_env(redis_server.client_url(), WEBHOOK_SECRET=GLOBAL,
                   WEBHOOK_SECRETS_FILE=str(tmp / "secrets.yaml"), WEBHOOK_SIGNING_KEY=SIGNING,
                   GITLAB_URL=GITLAB_URL, MAX_BODY_BYTES="200000", HEADER_TIMEOUT_SECONDS="1",
                   BODY_TIMEOUT_SECONDS="1")
    proc, url = start_web(env, tmp, workers=2)
    yield {"proc": proc, "port": int(url.rsplit(":", 1)[1])}
    proc.stop()


def _chunked(body: bytes, draw) -> bytes:
    out = b""
    i = 0
    while i < len(body):
        n = draw(st.integers(1, max(1, len(body) - i)))
        ext = draw(st.sampled_from([b"", b"", b";a=b", b";" + b"x" * 2000]))
        out += b"%x%s\r\n%s\r\n" % (n, ext, body[i:i + n])
        i += n
    return out + b"0\r\n" + draw(st.sampled_from([b"", b"X-Trailer: 1\r\n", b"bad trailer\r\n"])) \
        + b"\r\n"


@st.composite
def raw_requests(draw) -> tuple[bytes, bool]:
    body = draw(payloads())
    _, gitlab = draw(deliveries())
    now = int(time.time())
    gitlab["webhook-id"] = gitlab.get("webhook-id", "msg-raw")
    gitlab.setdefault("webhook-timestamp", str(now))
    try:
        gitlab["webhook-signature"] = signature_header(KEY, gitlab["webhook-id"],
                                                       gitlab["webhook-timestamp"], body)
    except UnicodeEncodeError:
        pass
    method = draw(st.sampled_from([b"POST"] * 40 + [b"GET", b"PUT", b"DELETE", b"OPTIONS", b"post",
                                                    b"P\x00ST", b"", b"CONNECT", b"GE T"]))
    target = draw(st.sampled_from([b"/webhooks/gitlab"] * 40 + [
        b"/healthz", b"/readyz", b"/", b"*", b"/webhooks/gitlab?x=1", b"//", b"/%00",
        b"http://x/webhooks/gitlab", b"/" + b"a" * 5000, b"/\xff"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 40 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x",
                                                        b"", b"http/1.1", b"HTTP/0.9"]))
    eol = draw(st.sampled_from([b"\r\n"] * 40 + [b"\n", b"\r"]))
    lines = [b" ".join(p for p in (method, target, version) if p or draw(st.booleans()))]
    lines += [f"{k}: {v}".encode() for k, v in gitlab.items()]
    for _ in range(draw(st.sampled_from([0] * 6 + [1, 2, 3]))):  # junk header lines
        lines.append(draw(st.sampled_from([
            b"X-A:\tb\t", b"X-Nul: a\x00b", b" folded continuation", b"No-Colon", b"Bad Name: x", b": empty",
            b"X-Long: " + b"v" * 9000, b"Host: a", b"Host: b", b"X-\xff: latin",
            b"Content-Type: application/json", b"Connection: close", b"Connection: keep-alive",
            b"Expect: 100-continue", b"Expect: nonsense", b"Transfer-Encoding: identity",
        ]) | st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)))
    framing = draw(st.sampled_from(["cl"] * 12 + ["chunked"] * 8 + [
        "cl-short", "cl-long", "cl-garbage", "cl-twice", "none", "both", "chunked-bad",
        "chunked-truncated", "chunked-huge", "te-weird"]))
    if framing == "cl":
        lines.append(b"Content-Length: %d" % len(body))
        data = body
    elif framing == "cl-short":  # says more than it sends
        lines.append(b"Content-Length: %d" % (len(body) + draw(st.integers(1, 1000))))
        data = body
    elif framing == "cl-long":  # sends more than it says: the rest is the next "request"
        lines.append(b"Content-Length: %d" % max(0, len(body) - draw(st.integers(1, 50))))
        data = body + draw(st.binary(max_size=50))
    elif framing == "cl-garbage":
        lines.append(b"Content-Length: " + draw(st.sampled_from(
            [b"-1", b"1e3", b"0x10", b" 5", b"99999999999999999999", b"", b"+5", b"\xd9\xa1"])))
        data = body
    elif framing == "cl-twice":
        lines += [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 1)]
        data = body
    elif framing == "none":
        data = body
    elif framing == "both":
        lines += [b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked"]
        data = _chunked(body, draw)
    elif framing == "te-weird":
        lines.append(b"Transfer-Encoding: " + draw(st.sampled_from(
            [b"gzip", b"chunked, chunked", b"CHUNKED", b"gzip, chunked", b"chunked;x", b"x"])))
        data = _chunked(body, draw)
    else:
        lines.append(b"Transfer-Encoding: chunked")
        data = _chunked(body, draw)
        if framing == "chunked-bad":
            k = draw(st.integers(0, max(0, len(data) - 1)))
            data = data[:k] + draw(st.sampled_from([b"zz", b"\r\n\r\n", b"\n", b"-1", b"\x00",
                                                    b"ffffffffffffffffff"])) + data[k:]
        elif framing == "chunked-truncated":
            data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
        elif framing == "chunked-huge":
            data = b"fffffffff\r\n" + body
    raw = eol.join(lines) + eol + eol + data
    if draw(st.sampled_from([False] * 9 + [True])):  # pipelined: a second request on the same connection
        raw += b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    half_close = draw(st.sampled_from([True] * 9 + [False]))  # else the server's timeouts must end it
    return raw, half_close


@seeded(RAW_EXAMPLES)
@given(raw_requests())
def test_raw_hostile_requests_get_json_4xx_from_gunicorn(server, request_and_close):
    raw, half_close = request_and_close
    # Without a half-close an unfinished request ends with the server's 1 s timeouts (408);
    # a finished one is answered and kept alive (the client would send its next request).
    limit = 4.0 if half_close else 2.5
    ex = exchange(server["port"], raw, half_close=half_close, timeout=limit)
    event(f"answers {[a.status for a in ex.answers]}")
    assert ex.answers, (raw[:300], ex)  # every request that sent a byte gets an answer
    assert ex.rest == b"", ex.rest[:300]  # nothing but well-framed answers (no HTML page)
    for a in ex.answers:
        assert a.status < 500, (a, raw[:300])
        assert a.headers.get("content-type") == "application/json", a
        answer = orjson.loads(a.body)
        assert isinstance(answer, dict) and "status" in answer
    assert ex.closed or ex.answers[-1].headers.get("connection") == "keep-alive", ex


def test_gunicorn_logged_no_secret_and_no_error(server):
    """After the raw fuzz above: the server's log lines (its own and the app's)."""
    log = server["proc"].log()
    lines = [l for l in log.split("\n") if l.strip()]  # (splitlines() also splits at \x1c..)
    assert lines and all(l.startswith("{") for l in lines), [l for l in lines
                                                             if not l.startswith("{")][:3]
    assert_no_secrets(log, "gunicorn's log")
    assert '"level":"error"' not in log, [l for l in lines if '"level":"error"' in l][:3]
