"""Changing one job's `retry:` or `timeout:` in a `.gitlab-ci.yml`, and nothing else.

ruamel.yaml's round-trip parser reads the file with every comment, anchor and key in place and
says on which line each key of the job starts. The new entry is then written into the original
text at that place (replacing the job's own `retry:`/`timeout:`, or after the job's last line),
so every other byte of the file stays as its authors wrote it: comments, anchors and aliases,
quoting, indentation, blank lines. The result is parsed again and must equal the original with
exactly that one key of that one job changed; an edit that would reach further (the job's
mapping is an anchor other jobs merge, say) is refused instead of written.

What the job does today, and so what the new value is, comes from merged.py.
"""

from __future__ import annotations

import copy
import difflib
import io
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import YAMLError

from tasks.ci.pipeline_fix.merged import Skip, current_timeout, desired_retry, desired_timeout, effective
from tasks.gitlab.durations import format_duration, words

ROOT_KEYWORDS = {"image", "services", "stages", "types", "before_script", "after_script",
                 "variables", "cache", "default", "workflow", "include", "spec", "pages"}
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Change:
    content: str   # the whole new file
    job: str       # the YAML key of the job edited
    key: str       # "retry" or "timeout"
    before: Any    # what the job had (effective value), None when unset
    after: Any     # the value written
    inherited: str | None  # where `before` came from when not the job itself ("default", ".base")
    diff: str      # unified diff of the file


def _rt() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.allow_duplicate_keys = False
    return y


def _plain(node: Any) -> Any:
    """ruamel's round-trip objects as plain data, merge keys and aliases resolved."""
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        tag = getattr(node, "tag", None)
        items = [_plain(v) for v in node]
        value = getattr(tag, "value", None)
        return ("!tag", value, items) if value and value.startswith("!") else items
    if isinstance(node, TaggedScalar):
        return ("!tag", node.tag.value, node.value)
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def parse(text: str) -> CommentedMap:
    if len(text.encode()) > MAX_FILE_BYTES:
        raise Skip("the CI configuration is larger than 1 MB")
    try:
        root = _rt().load(text)
    except (YAMLError, ValueError) as exc:
        raise Skip(f"the CI configuration is not valid YAML ({str(exc).splitlines()[0][:200]})") \
            from None
    if not isinstance(root, CommentedMap):
        raise Skip("the CI configuration is not a mapping of jobs")
    return root


def yaml_key(root: dict, job_name: str) -> str | None:
    """The YAML key of GitLab's job name: `rspec 2/4` (parallel) and `build: [linux, amd64]`
    (parallel:matrix) are jobs of `rspec` and `build`."""
    if job_name in root:
        return job_name
    for pattern in (r"^(.*) \d+/\d+$", r"^(.*): \[.*\]$"):
        m = re.match(pattern, job_name)
        if m and m.group(1) in root:
            return m.group(1)
    return None


# -- writing it into the text ---------------------------------------------------------------
@dataclass(frozen=True)
class _Located:
    root: CommentedMap
    key: str
    lines: list[str]
    key_line: int      # 0-based line of `job:`
    indent: int        # column of the job's own keys
    step: int          # the file's mapping indentation
    last_line: int     # last line of the job's content (comments and blank lines after it excluded)


def _blank_or_comment(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


def locate(text: str, root: CommentedMap, job_name: str, path: str) -> _Located:
    key = yaml_key(root, job_name)
    if key is None:
        raise Skip(f"no job `{job_name}` in `{path}`")
    job = root[key]
    if not isinstance(job, CommentedMap):
        raise Skip(f"`{key}` in `{path}` is not a mapping")
    if job.fa.flow_style():
        raise Skip(f"`{key}` is written in flow style (`{{...}}`); devops-agent edits block "
                   "mappings only")
    if any(v is job for k, v in root.items() if k != key):
        raise Skip(f"`{key}` is an alias of another mapping in `{path}`")
    own = job.lc.data
    if not own:
        raise Skip(f"`{key}` has no keys of its own in `{path}`")
    key_line = root.lc.key(key)[0]
    if min(v[0] for v in own.values()) <= key_line:
        raise Skip(f"`{key}` starts on the line of its key; devops-agent edits block mappings only")
    lines = text.splitlines(keepends=True)
    later = sorted(v[0] for k, v in root.lc.data.items() if v[0] > key_line)
    end = (later[0] if later else len(lines)) - 1
    while end > key_line and _blank_or_comment(lines[end]):
        end -= 1
    indent = min(v[1] for v in own.values())
    step = max(1, indent - root.lc.key(key)[1])
    return _Located(root, key, lines, key_line, indent, step, end)


def _flow(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z0-9_./-]+", value) else repr(value)
    return str(value)


def _entry_lines(loc: _Located, field: str, value: Any, comment: str | None,
                 quote: str = "") -> list[str]:
    pad = " " * loc.indent
    out = [f"{pad}# {comment}\n"] if comment else []
    if isinstance(value, dict):
        out.append(f"{pad}{field}:\n")
        inner = " " * (loc.indent + loc.step)
        out += [f"{inner}{k}: {_flow(v)}\n" for k, v in value.items()]
    else:
        out.append(f"{pad}{field}: {quote}{value}{quote}\n")
    return out


def _own_entry_range(loc: _Located, field: str) -> tuple[int, int]:
    job = loc.root[loc.key]
    start = job.lc.key(field)[0]
    following = sorted(v[0] for k, v in job.lc.data.items() if v[0] > start)
    end = (following[0] - 1) if following else loc.last_line
    while end > start and _blank_or_comment(loc.lines[end]):
        end -= 1
    return start, end


def splice(text: str, root: CommentedMap, job_name: str, path: str, field: str, value: Any,
           comment: str | None) -> tuple[str, str]:
    """The new text with `field: value` set on the job; returns (text, YAML key)."""
    loc = locate(text, root, job_name, path)
    job = loc.root[loc.key]
    lines = list(loc.lines)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if field in job.lc.data:
        start, end = _own_entry_range(loc, field)
        first = lines[start].rstrip("\n")
        quote, eol = "", None
        if start == end:
            # The comment on the key's own line says why it was set; keep it with the value.
            m = re.match(r"\s*" + re.escape(field) + r":\s*(['\"]).*?\1(\s+#.*)?$", first)
            if m:
                quote, eol = m.group(1), m.group(2)
            else:
                found = re.search(r"\s+#.*$", first)
                eol = found.group(0) if found else None
        new = _entry_lines(loc, field, value, None, quote)
        if eol and not isinstance(value, dict):
            new[-1] = new[-1].rstrip("\n") + eol + "\n"
        lines[start:end + 1] = new
    else:
        lines[loc.last_line + 1:loc.last_line + 1] = _entry_lines(loc, field, value, comment)
    return "".join(lines), loc.key


def verify(old_root: CommentedMap, new_text: str, key: str, field: str, value: Any) -> None:
    """The new file must parse to the old one with only `key`'s `field` changed."""
    new_root = parse(new_text)
    expected = copy.deepcopy(_plain(old_root))
    expected[key][field] = value
    if _plain(new_root) != expected:
        raise Skip(f"setting `{field}:` on `{key}` would change other parts of the file too "
                   f"(its mapping is shared through an anchor, or its layout is unusual)")


def _diff(old: str, new: str, path: str) -> str:
    return "".join(difflib.unified_diff(io.StringIO(old).readlines(),
                                        io.StringIO(new).readlines(),
                                        f"a/{path}", f"b/{path}", n=2))


def _change(text: str, root: CommentedMap, job_name: str, path: str, field: str, value: Any,
            written: Any, before: Any, inherited: str | None, comment: str | None) -> Change:
    new_text, key = splice(text, root, job_name, path, field, written, comment)
    verify(root, new_text, key, field, value)
    return Change(new_text, key, field, before, value, inherited, _diff(text, new_text, path))


def job_key(text: str, merged: dict | None, job_name: str, path: str) -> str:
    """The job's YAML key in this file, or Skip saying where the job comes from instead."""
    root = parse(text)
    key = yaml_key(root, job_name)
    if key is not None:
        return key
    if merged is not None and yaml_key(merged, job_name) is not None:
        raise Skip(f"`{job_name}` comes from a file `{path}` includes, not from `{path}` "
                   "itself; devops-agent edits only that file")
    raise Skip(f"no job `{job_name}` in `{path}` (renamed since it failed?)")


def plan_retry(text: str, merged: dict | None, job_name: str, reasons: list[str],
               max_retries: int, path: str = ".gitlab-ci.yml") -> Change:
    """Add the GitLab failure `reasons` to the job's `retry:when`."""
    root = parse(text)
    merged = merged_or_file(merged, root, path)
    key = job_key(text, merged, job_name, path)
    before, inherited = effective(merged, key, "retry")
    value = desired_retry(key, before, reasons, max_retries)
    comment = "Retried when the runner or GitLab fails, never the script (devops-agent)."
    return _change(text, root, job_name, path, "retry", value, value, before, inherited,
                   comment)


def plan_timeout(text: str, merged: dict | None, job_name: str, project_timeout: float,
                 step: float, maximum: float, path: str = ".gitlab-ci.yml") -> Change:
    """Raise the job's `timeout:` by `step`, never above `maximum`."""
    root = parse(text)
    merged = merged_or_file(merged, root, path)
    key = job_key(text, merged, job_name, path)
    limit, _ = current_timeout(merged, key, project_timeout)
    before, inherited = effective(merged, key, "timeout")
    value = format_duration(desired_timeout(key, limit, step, maximum))
    comment = f"Raised from {words(limit)}: passing runs come close to it (devops-agent)."
    return _change(text, root, job_name, path, "timeout", value, value, before, inherited,
                   comment)


def merged_or_file(merged: dict | None, root: CommentedMap, path: str) -> dict:
    """GitLab's merged configuration, or the file itself when it includes nothing."""
    if merged is not None:
        return merged
    if "include" in root:
        raise Skip(f"`{path}` includes other files and GitLab's merged configuration is not "
                   "available")
    plain = _plain(root)
    return plain if isinstance(plain, dict) else {}
