"""What a job does today, and what its new `retry:` or `timeout:` is.

What the job does is read from the configuration GitLab merges (CI lint's `merged_yaml`:
includes merged), with `extends:` chains and `default:` applied as GitLab applies them, so a job
that inherits `retry: 2` from a template is not given a narrower one. Whatever cannot be read or
changed safely is a Skip, whose words go into the failure comment.
"""

from __future__ import annotations

from typing import Any

import yaml

from tasks.gitlab.durations import parse_duration, words

MAX_EXTENDS_DEPTH = 11  # GitLab's own limit


class Skip(Exception):
    """No change can be made safely; `str(skip)` says why, for the comment."""


class _Reference(list):
    """`!reference [...]` in GitLab's merged YAML: a value we cannot see through."""


class _MergedLoader(yaml.SafeLoader):
    pass


_MergedLoader.add_constructor("!reference",
                              lambda loader, node: _Reference(loader.construct_sequence(node)))


def load_merged(text: str | None) -> dict | None:
    """CI lint's `merged_yaml` as plain data (None when it is missing or unreadable)."""
    if not text:
        return None
    try:
        data = yaml.load(text, Loader=_MergedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _deep_merge(base: dict, over: dict) -> dict:
    """`extends:` merging: hashes merge key by key, everything else (lists too) is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def resolved_job(merged: dict, key: str) -> tuple[dict, dict[str, str]]:
    """The job with its `extends:` chain applied, and for each inherited key the template
    that gave it."""

    def resolve(name: str, depth: int) -> tuple[dict, dict[str, str]]:
        job = merged.get(name)
        if not isinstance(job, dict):
            raise Skip(f"`{name}` is not a job mapping")
        raw = job.get("extends")
        if raw is None:
            return dict(job), {}
        if depth >= MAX_EXTENDS_DEPTH:
            raise Skip(f"`{key}`'s `extends:` chain is deeper than GitLab allows")
        bases = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else None
        if bases is None or not all(isinstance(b, str) for b in bases):
            raise Skip(f"`{key}` has an `extends:` devops-agent cannot read")
        out: dict = {}
        origin: dict[str, str] = {}
        for base in bases:
            if base not in merged:
                raise Skip(f"`{key}` extends `{base}`, which is not in the merged configuration")
            sub, sub_origin = resolve(base, depth + 1)
            origin.update({k: sub_origin.get(k, base) for k in sub})
            out = _deep_merge(out, sub)
        own = {k: v for k, v in job.items() if k != "extends"}
        for k in own:
            origin.pop(k, None)
        return _deep_merge(out, own), origin

    return resolve(key, 0)


def effective(merged: dict, key: str, field: str) -> tuple[Any, str | None]:
    """(value, where it comes from: None for the job itself, a template's name, "default")."""
    job, origin = resolved_job(merged, key)
    if field in job:
        value = job[field]
        if isinstance(value, _Reference):
            raise Skip(f"`{key}`'s `{field}:` is a `!reference`; devops-agent does not edit those")
        return value, origin.get(field)
    # default: applies to retry, not to timeout (GitLab issue 213634: no effect there).
    if field == "retry":
        raw_inherit, raw_defaults = job.get("inherit"), merged.get("default")
        inherit: dict = raw_inherit if isinstance(raw_inherit, dict) else {}
        allowed = inherit.get("default", True)
        defaults: dict = raw_defaults if isinstance(raw_defaults, dict) else {}
        if field in defaults and (allowed is True or
                                  (isinstance(allowed, list) and field in allowed)):
            return defaults[field], "default"
    return None, None


# -- what the new value is ----------------------------------------------------------------------
def desired_retry(job: str, current: Any, reasons: list[str], max_retries: int) -> dict:
    """The `retry:` that also retries `reasons`; Skip when the job already retries them."""
    if current is None or current == 0:
        return {"max": max_retries, "when": list(reasons)}
    if isinstance(current, bool):
        raise Skip(f"`{job}` has `retry: {current}`, which GitLab does not accept")
    if isinstance(current, int):
        raise Skip(f"`{job}` already retries every failure (`retry: {current}`)")
    if not isinstance(current, dict):
        raise Skip(f"`{job}` has a `retry:` devops-agent cannot read")
    mx, when, codes = current.get("max"), current.get("when"), current.get("exit_codes")
    if mx == 0:
        return {"max": max_retries, "when": list(reasons)}
    if when is None and codes is None:
        raise Skip(f"`{job}` already retries every failure (`retry:max: {mx}`)")
    when = [when] if isinstance(when, str) else list(when or [])
    if not all(isinstance(w, str) for w in when):
        raise Skip(f"`{job}` has a `retry:when` devops-agent cannot read")
    if "always" in when:
        raise Skip(f"`{job}` already retries every failure (`retry:when: always`)")
    missing = [r for r in reasons if r not in when]
    if not missing:
        raise Skip(f"`{job}` already retries on {', '.join(f'`{r}`' for r in reasons)}")
    out: dict = {"max": mx if isinstance(mx, int) and mx > 0 else max_retries,
                 "when": when + missing}
    if codes is not None:
        out["exit_codes"] = codes
    return out


def current_timeout(merged: dict, key: str, project_timeout: float) -> tuple[float, str]:
    """The job's limit in seconds and where it is set (for the evidence)."""
    value, source = effective(merged, key, "timeout")
    if value is None:
        return float(project_timeout), "the project's timeout setting"
    seconds = parse_duration(value)
    if seconds is None:
        raise Skip(f"`{key}` has `timeout: {value}`, which is not a duration GitLab reads")
    return seconds, (f"`timeout: {value}` of `{source}`" if source else f"`timeout: {value}`")


def desired_timeout(job: str, limit: float, step: float, maximum: float) -> float:
    if limit >= maximum:
        raise Skip(f"`{job}`'s timeout is {words(limit)} already, the most devops-agent "
                   f"proposes is {words(maximum)} (`pipeline_fixes.timeout_max`)")
    return min(limit + step, maximum)
