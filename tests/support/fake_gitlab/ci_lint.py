"""The part of GitLab's CI configuration check that our merge requests touch, for the fake's
`POST /projects/:id/ci/lint` (doc/api/lint.md). It answers `valid`, `errors`, `warnings`,
`merged_yaml` and `includes` like `Gitlab::Ci::Lint#legacy_validate`, in GitLab's order:

1. load: empty content, YAML syntax (Psych-style message), not a mapping;
2. `include:` — local files are read from the project at the linted commit and merged
   (deep merge, the including file wins); other include types are reported, not fetched;
3. `!reference` tags, then `extends:` (unknown bases, circular or too-deep chains);
4. entries (every error collected): `stages`, each job's shape (`script`/`run`/`trigger`),
   unknown job keys, `retry`, `timeout`, `script` types;
5. the processor's first error: a job's `stage` must be declared, `needs`/`dependencies`
   must name jobs.

Error texts are GitLab's own (lib/gitlab/ci/config/entry/*.rb, lib/gitlab/config/entry/
validators.rb, their specs): entry messages are lower-cased and prefixed with the entry's
location, e.g. `jobs:build:timeout config should be a duration`; `retry` overrides its
location, so its errors read `retry max must be less than or equal to 2`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

DEFAULT_STAGES = ["build", "test", "deploy"]
ROOT_KEYWORDS = {"image", "services", "stages", "types", "before_script", "after_script",
                 "variables", "cache", "default", "workflow", "include", "spec"}
JOB_KEYS = {
    "script", "run", "after_script", "allow_failure", "artifacts", "before_script", "cache",
    "coverage", "dast_configuration", "dependencies", "environment", "except", "extends",
    "hooks", "identity", "id_tokens", "image", "inherit", "interruptible",
    "manual_confirmation", "needs", "only", "pages", "parallel", "release", "resource_group",
    "retry", "rules", "secrets", "services", "stage", "start_in", "tags", "timeout",
    "trigger", "variables", "when", "type", "publish", "environment_name",
}
# retry:when accepts every Ci::Build failure reason plus `always`
# (Entry::Retry::FullRetry.possible_retry_when_values; app/models/concerns/enums/ci/
# commit_status.rb). doc/ci/yaml/_index.md#retrywhen documents the first thirteen.
RETRY_WHEN = (
    "always", "unknown_failure", "script_failure", "api_failure", "stuck_or_timeout_failure",
    "runner_system_failure", "runner_unsupported", "stale_schedule", "job_execution_timeout",
    "archived_failure", "unmet_prerequisites", "scheduler_failure", "data_integrity_failure",
    "missing_dependency_failure", "forward_deployment_failure", "user_blocked",
    "project_deleted", "ci_quota_exceeded", "pipeline_loop_detected", "no_matching_runner",
    "trace_size_exceeded", "builds_disabled", "insufficient_bridge_permissions",
    "downstream_bridge_project_not_found", "invalid_bridge_trigger",
    "bridge_pipeline_is_child_pipeline", "downstream_pipeline_creation_failed",
    "secrets_provider_not_found", "reached_max_descendant_pipelines_depth",
)
MAX_EXTENDS_DEPTH = 11
MAX_INCLUDES = 150
# Project::MAX_BUILD_TIMEOUT is one month; a job timeout must stay below it.
TIMEOUT_LIMIT = 30 * 86400


class Reference(list):
    """A `!reference [job, key, ...]` tag, resolved after includes are merged."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!reference",
                        lambda loader, node: Reference(loader.construct_sequence(node)))


class LintError(Exception):
    pass


def _load(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.context_mark or e.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        context = f" {e.context}" if e.context else ""
        raise LintError(f"(<unknown>): {e.problem}{context}{where}") from None
    except yaml.YAMLError as e:
        raise LintError(f"(<unknown>): {e}") from None


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# -- durations: ChronicDuration, the parser GitLab uses for `timeout` -------------------------
_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "wks": 604800, "week": 604800, "weeks": 604800,
    "mo": 2592000, "mos": 2592000, "month": 2592000, "months": 2592000,
    "y": 31557600, "yr": 31557600, "yrs": 31557600, "year": 31557600, "years": 31557600,
}


def parse_duration(value: Any) -> float | None:
    """Seconds for a duration GitLab accepts ("1h 30m", "90 minutes", "3 hours and 10
    seconds", "1:30:00", "3600"), None otherwise. GitLab wants a string: an integer
    `timeout:` is not a duration (LegacyValidationHelpers#validate_duration)."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if not text:
        return None
    if re.fullmatch(r"\d+(:\d{1,2}){1,2}", text):
        total = 0
        for part in text.split(":"):
            total = total * 60 + int(part)
        return float(total)
    text = re.sub(r"\band\b|,", " ", text)
    tokens = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if not tokens or re.sub(r"(\d+(?:\.\d+)?)\s*([a-z]*)", "", text).strip():
        return None
    total = 0.0
    for number, unit in tokens:
        if unit and unit not in _UNITS:
            return None
        total += float(number) * _UNITS.get(unit, 1)
    return total


# -- the checks ------------------------------------------------------------------------------
def _retry_errors(cfg: Any) -> list[str]:
    """Entry::Retry (lib/gitlab/ci/config/entry/retry.rb; its spec holds these texts)."""
    if isinstance(cfg, bool) or not isinstance(cfg, (int, dict)):
        return ["retry config has to be either an integer or a hash"]
    if isinstance(cfg, int):
        if cfg < 0:
            return ["retry config must be greater than or equal to 0"]
        if cfg > 2:
            return ["retry config must be less than or equal to 2"]
        return []
    errors = []
    unknown = [str(k) for k in cfg if k not in ("max", "when", "exit_codes")]
    if unknown:
        errors.append(f"retry config contains unknown keys: {', '.join(unknown)}")
    mx = cfg.get("max")
    if mx is not None:
        if isinstance(mx, bool) or not isinstance(mx, int):
            errors.append("retry max must be an integer")
        elif mx < 0:
            errors.append("retry max must be greater than or equal to 0")
        elif mx > 2:
            errors.append("retry max must be less than or equal to 2")
    when = cfg.get("when")
    if when is not None:
        if isinstance(when, str):
            if when not in RETRY_WHEN:
                errors.append("retry when is not included in the list")
        elif isinstance(when, list) and all(isinstance(w, str) for w in when):
            bad = [w for w in when if w not in RETRY_WHEN]
            if bad:
                errors.append(f"retry when contains unknown values: {', '.join(bad)}")
        else:
            errors.append("retry when should be an array of strings or a string")
    codes = cfg.get("exit_codes")
    if codes is not None:
        ints = (isinstance(codes, int) and not isinstance(codes, bool)) or (
            isinstance(codes, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                            for x in codes))
        if not ints:
            errors.append("retry exit codes should be an array of integers or an integer")
    return errors


def _is_string_or_nested(value: Any, depth: int = 10) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, list) and depth > 0:
        return all(_is_string_or_nested(v, depth - 1) for v in value)
    return False


def _job_errors(name: str, job: dict) -> list[str]:
    loc = f"jobs:{name}"
    errors = []
    unknown = [str(k) for k in job if k not in JOB_KEYS]
    if unknown:
        errors.append(f"{loc} config contains unknown keys: {', '.join(unknown)}")
    for key in ("script", "before_script", "after_script"):
        if key in job and not _is_string_or_nested(job[key]):
            errors.append(f"{loc}:{key} config should be a string or a nested array of strings "
                          "up to 10 levels deep")
    if "stage" in job and not isinstance(job["stage"], str):
        errors.append(f"{loc}:stage config should be a string")
    if "retry" in job:
        errors += _retry_errors(job["retry"])
    if "timeout" in job:
        seconds = parse_duration(job["timeout"])
        if seconds is None:
            errors.append(f"{loc}:timeout config should be a duration")
        elif seconds >= TIMEOUT_LIMIT:
            errors.append(f"{loc}:timeout config should not exceed the limit")
    return errors


def _resolve_references(node: Any, root: dict, errors: list[str]) -> Any:
    if isinstance(node, Reference):
        cur: Any = root
        for part in node:
            if not isinstance(cur, dict) or part not in cur:
                errors.append("!reference [" + ", ".join(f'"{p}"' for p in node)
                              + "] could not be found")
                return None
            cur = cur[part]
        return _resolve_references(copy.deepcopy(cur), root, errors)
    if isinstance(node, dict):
        return {k: _resolve_references(v, root, errors) for k, v in node.items()}
    if isinstance(node, list):
        out = []
        for v in node:
            r = _resolve_references(v, root, errors)
            # A !reference to a list inside a list is flattened one level, as GitLab does.
            if isinstance(v, Reference) and isinstance(r, list):
                out.extend(r)
            else:
                out.append(r)
        return out
    return node


def _extend(config: dict) -> None:
    """Entry::Extendable: merge each `extends:` chain, base first, the job on top."""
    done: dict[str, dict] = {}

    def resolve(key: str, path: list[str]) -> dict:
        if key in done:
            return done[key]
        value = config[key]
        if not isinstance(value, dict) or "extends" not in value:
            return value
        raw = value["extends"]
        bases = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else [raw]
        bases = [str(b) for b in bases]
        unknown = [b for b in bases if b not in config]
        if unknown:
            raise LintError(f"{key}: unknown keys in `extends` ({', '.join(unknown)})")
        invalid = [b for b in bases if not isinstance(config[b], dict)]
        if invalid:
            raise LintError(f"{key}: invalid base hashes in `extends` ({', '.join(invalid)})")
        if len(path) >= MAX_EXTENDS_DEPTH:
            raise LintError(f"{key}: nesting too deep in `extends`")
        if any(b in path or b == key for b in bases):
            raise LintError(f"{key}: circular dependency detected in `extends`")
        merged: dict = {}
        for b in bases:
            merged = _deep_merge(merged, resolve(b, [*path, key]))
        out = _deep_merge(merged, value)
        done[key] = out
        return out

    for key in list(config):
        if isinstance(config[key], dict) and "extends" in config[key]:
            config[key] = resolve(key, [])


def _includes(config: dict, files: dict, project: dict, sha: str, found: list[dict],
              errors: list[str], depth: int = 0) -> dict:
    """Merge `include:` entries into `config` (the including file wins)."""
    raw = config.pop("include", None)
    if raw is None:
        return config
    entries = raw if isinstance(raw, list) else [raw]
    merged: dict = {}
    for entry in entries:
        if isinstance(entry, str):
            entry = {"remote": entry} if re.match(r"https?://", entry) else {"local": entry}
        if not isinstance(entry, dict):
            errors.append(f"Included file `{entry}` does not have valid YAML syntax!")
            continue
        kinds = [k for k in ("local", "remote", "template", "project", "component", "artifact")
                 if k in entry]
        if len(kinds) != 1:
            errors.append(f"Included file `{entry}` does not have a valid syntax!")
            continue
        kind = kinds[0]
        if kind != "local":
            # Not modelled: the fake cannot fetch these, so it says so instead of guessing.
            errors.append(f"fake GitLab: include:{kind} `{entry[kind]}` is not modelled; "
                          "only include:local is")
            continue
        if len(found) >= MAX_INCLUDES:
            errors.append(f"Maximum of {MAX_INCLUDES} nested includes are allowed!")
            break
        location = str(entry["local"]).lstrip("/")
        if "*" in location:
            errors.append(f"fake GitLab: include:local wildcards (`{location}`) are not modelled")
            continue
        base = project["web_url"]
        item = {"type": "local", "location": location, "blob": None, "raw": None,
                "extra": {k: v for k, v in entry.items() if k != "local"},
                "context_project": project["path_with_namespace"], "context_sha": sha}
        content = files.get(location)
        if content is None:
            errors.append(f"Local file `{location}` does not exist!")
            found.append(item)
            continue
        if not content.strip():
            errors.append(f"Local file `{location}` is empty!")
            found.append(item)
            continue
        item["blob"] = f"{base}/-/blob/{sha}/{location}"
        item["raw"] = f"{base}/-/raw/{sha}/{location}"
        found.append(item)
        try:
            sub = _load(content)
        except LintError:
            errors.append(f"Included file `{location}` does not have valid YAML syntax!")
            continue
        if not isinstance(sub, dict):
            errors.append(f"Included file `{location}` does not have valid YAML syntax!")
            continue
        if depth >= 100:
            errors.append("Nested includes are too deep")
            continue
        sub = _includes(sub, files, project, sha, found, errors, depth + 1)
        merged = _deep_merge(merged, sub)
    return _deep_merge(merged, config)


def lint(content: str, files: dict, project: dict, sha: str, include_jobs: bool = False) -> dict:
    """The lint answer for `content` linted in `project` at commit `sha` (whose `files` serve
    include:local)."""
    def answer(errors, merged_yaml=None, includes=None, jobs=None) -> dict:
        out = {"valid": not errors, "errors": errors, "warnings": [],
               "merged_yaml": merged_yaml, "includes": includes}
        if include_jobs:
            out["jobs"] = jobs or []
        return out

    if not (content or "").strip():
        return answer(["Please provide content of .gitlab-ci.yml"])
    try:
        config = _load(content)
    except LintError as e:
        return answer([str(e)])
    if not isinstance(config, dict):
        return answer(["Invalid configuration format"])
    config = {str(k): v for k, v in config.items()}
    found: list[dict] = []
    errors: list[str] = []
    config = _includes(config, files, project, sha, found, errors)
    if errors:
        return answer(errors, None, found)
    config = _resolve_references(config, config, errors)
    if errors:
        return answer(errors, None, found)
    merged_yaml = "---\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    try:
        _extend(config)
    except LintError as e:
        return answer([str(e)], merged_yaml, found)

    # Entries: every error, lower-cased as Gitlab::Config::Entry::Validator#messages does.
    entry_errors: list[str] = []
    stages = config.get("stages", config.get("types"))
    if stages is not None and not (isinstance(stages, list)
                                   and all(isinstance(s, str) for s in stages)):
        entry_errors.append("stages config should be an array of strings")
    jobs = {k: v for k, v in config.items() if k not in ROOT_KEYWORDS}
    visible = {}
    for name, job in jobs.items():
        if name.startswith("."):
            continue  # hidden: a template for `extends`, not a job
        if not isinstance(job, dict) or not ({"script", "run", "trigger"} & set(job)):
            entry_errors.append(f"jobs {name.replace(' ', '_')} config should implement the "
                                "script:, run:, or trigger: keyword")
            continue
        visible[name] = job
        entry_errors += _job_errors(name, job)
    if not visible:
        entry_errors.append("jobs config should contain at least one visible job")
    if entry_errors:
        return answer([e.lower() for e in entry_errors], merged_yaml, found)

    # The processor's checks (Gitlab::Ci::YamlProcessor): the first failure only.
    declared = list(stages) if isinstance(stages, list) else list(DEFAULT_STAGES)
    all_stages = [".pre"] + [s for s in declared if s not in (".pre", ".post")] + [".post"]
    for name, job in visible.items():
        stage = job.get("stage", "test")
        if stage not in all_stages:
            return answer([f"{name} job: chosen stage does not exist; available stages are "
                           f"{', '.join(all_stages)}"], merged_yaml, found)
        for dep in job.get("dependencies") or []:
            if dep not in visible:
                return answer([f"{name} job: undefined dependency: {dep}"], merged_yaml, found)
        for need in job.get("needs") or []:
            need_name = need.get("job") if isinstance(need, dict) else need
            if isinstance(need, dict) and ("project" in need or "pipeline" in need):
                continue
            if need_name not in visible:
                return answer([f"{name} job: undefined need: {need_name}"], merged_yaml, found)

    listed = []
    for stage in all_stages:
        for name, job in visible.items():
            if job.get("stage", "test") != stage:
                continue
            script = job.get("script", [])
            listed.append({
                "name": name, "stage": stage,
                "before_script": _flat(job.get("before_script", config.get("before_script", []))),
                "script": _flat(script), "after_script": _flat(job.get("after_script", [])),
                "tag_list": list(job.get("tags") or []), "only": job.get("only"),
                "except": job.get("except"), "environment": job.get("environment"),
                "when": job.get("when", "on_success"),
                "allow_failure": bool(job.get("allow_failure", job.get("when") == "manual")),
                "needs": job.get("needs")})
    return answer([], merged_yaml, found, listed)


def _flat(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    for v in value:
        out += _flat(v) if isinstance(v, list) else [str(v)]
    return out
