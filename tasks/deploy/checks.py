"""Verification: HTTP health probes and Prometheus threshold queries, one round per call.

A round is short (one request per check, each with its own timeout) so `advance` stays short;
the counters that make "N consecutive successes" live in the deploy record between rounds.
"""

from __future__ import annotations

import json
import operator
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

from tasks.config.environments import EnvironmentConfig, HealthCheck, PrometheusCheck, fill

Verdict = Literal["pass", "fail", "pending", "inconclusive"]

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reason: str = ""


def probe(check: HealthCheck, url: str) -> tuple[bool, str]:
    """One GET; (ok, what was observed)."""
    try:
        with urllib.request.urlopen(url, timeout=check.timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError) as e:
        return False, f"no answer ({getattr(e, 'reason', e)})"
    return status == check.expect_status, f"HTTP {status}"


def prometheus_value(url: str, query: str, timeout: float) -> float | None:
    """Instant query; the worst value across series (None: no data)."""
    full = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(full, timeout=timeout) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise ValueError(f"prometheus answered {body.get('status')}: {body.get('error', '')}")
    values = [float(r["value"][1]) for r in body.get("data", {}).get("result", [])]
    return max(values) if values else None


def evaluate_prometheus(check: PrometheusCheck, values: dict[str, Any]) -> Outcome:
    query = fill(check.query, values)
    try:
        value = prometheus_value(check.url, query, check.timeout)
        samples = (prometheus_value(check.url, fill(check.sample_query, values), check.timeout)
                   if check.sample_query else None)
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        return Outcome("inconclusive", f"{check.name}: Prometheus query failed ({e})")
    if check.sample_query and (samples or 0) < check.min_samples:
        return Outcome("inconclusive", f"{check.name}: only {samples or 0:g} samples "
                       f"(need {check.min_samples:g}) — too little traffic to judge")
    if value is None:
        return Outcome("inconclusive", f"{check.name}: no data for `{query}`")
    detail = f"{check.name} = {value:g} (threshold {check.op} {check.threshold:g}"
    detail += f", {samples:g} samples)" if samples is not None else ")"
    if _OPS[check.op](value, check.threshold):
        return Outcome("pass", detail)
    return Outcome("fail", detail)


def verify_round(cfg: EnvironmentConfig, state: dict, values: dict[str, Any], *, now: float,
                 final: bool | None = None) -> Outcome:
    """One verification round, updating `state` (persisted by the caller).

    final=None: decide as soon as the HTTP checks reach their success count (rolling,
    blue-green). final=False: keep probing, only failures decide (canary mid-interval).
    final=True: decide now, Prometheus included (canary end of interval)."""
    state.setdefault("started", now)
    succ = state.setdefault("successes", {})
    fails = state.setdefault("failures", {})
    notes = []
    for i, check in enumerate(cfg.health_checks):
        url = fill(check.url, values)
        ok, seen = probe(check, url)
        key = str(i)
        succ[key] = succ.get(key, 0) + 1 if ok else 0
        fails[key] = 0 if ok else fails.get(key, 0) + 1
        if fails[key] >= check.failures:
            return Outcome("fail", f"health check GET {url}: {seen} {fails[key]} times in a row "
                                   f"(expected HTTP {check.expect_status})")
        if succ[key] < check.successes:
            notes.append(f"GET {url}: {seen}, {succ[key]}/{check.successes} successes")
    http_ok = not notes
    if final is False or (final is None and not http_ok):
        if final is None and now - state["started"] > cfg.verification.timeout:
            return Outcome("fail", f"health checks did not pass within {cfg.verification.timeout:g}s: "
                           + "; ".join(notes))
        return Outcome("pending", "; ".join(notes))
    if not http_ok:
        return Outcome("fail", "health checks did not reach their success count: " + "; ".join(notes))
    inconclusive = []
    passed = [f"{h.successes} consecutive successes of GET {fill(h.url, values)}" for h in cfg.health_checks]
    for prom in cfg.prometheus:
        outcome = evaluate_prometheus(prom, values)
        if outcome.verdict == "fail":
            return outcome
        if outcome.verdict == "inconclusive":
            inconclusive.append(outcome.reason)
        else:
            passed.append(outcome.reason)
    if inconclusive:
        return Outcome("inconclusive", "; ".join(inconclusive))
    return Outcome("pass", "; ".join(passed) or "no checks configured")
