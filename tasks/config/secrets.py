"""Secrets: a value that never shows itself, project-bound webhook secrets (WEBHOOK_SECRETS_FILE),
the signing key and its forms, and masking a URL's password.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    GetCoreSchemaHandler,
)
from pydantic_core import core_schema
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from tasks.config.errors import ConfigError
from tasks.config.yamlfile import YamlSyntaxError, compose, read_text

MIN_SECRET_LENGTH = 8


MAX_SECRETS_FILE_BYTES = 1024 * 1024


MASK = "**********"


# What a binding may name: `*` (every project: the same as WEBHOOK_SECRET), a numeric project
# id, or a project/group path whose segments may hold the glob characters `*` and `?`.
_PROJECT_ID = re.compile(r"[1-9][0-9]{0,18}")


_PATH_GLOB = re.compile(r"[A-Za-z0-9_.+*?-]+(/[A-Za-z0-9_.+*?-]+)+")


@dataclass(frozen=True)
class Secret:
    """A string that never shows its value in repr(), logs, tracebacks or model dumps."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        def build(v: Any) -> Secret:
            if isinstance(v, Secret):
                return v
            if isinstance(v, str):
                return Secret(v)
            raise ValueError("expected a string")

        return core_schema.no_info_plain_validator_function(
            build, serialization=core_schema.plain_serializer_function_ser_schema(lambda _: MASK))


@dataclass(frozen=True)
class SecretBinding:
    """Secret tokens (several while rotating) that may speak for the projects `pattern` names.

    `pattern` is `*` (any project: the global WEBHOOK_SECRET), a numeric project id (`42`), or a
    path glob matched case-insensitively against `project.path_with_namespace`, where `*` also
    crosses `/` (`acme/*` is every project in the acme group and its subgroups).
    """

    pattern: str
    secrets: tuple[Secret, ...] = field(repr=False)
    line: int = 0  # where it was declared in WEBHOOK_SECRETS_FILE (0: WEBHOOK_SECRET)

    def matches(self, path: str | None, project_id: int | None) -> bool:
        return binding_matches(self.pattern, path, project_id)


def binding_matches(pattern: str, path: str | None, project_id: int | None) -> bool:
    """Does a binding's pattern cover this project? An id binding matches only the id, a path
    glob only the path; `*` matches every delivery, even one that names no project."""
    if pattern == "*":
        return True
    if pattern.isdigit():
        return project_id is not None and not isinstance(project_id, bool) \
            and str(project_id) == pattern
    if not path:
        return False
    return fnmatch.fnmatchcase(path.lower(), pattern.lower())


def url_password(url: str | None) -> str | None:
    """The password in `scheme://user:password@host...`, if any."""
    m = re.match(r"[a-z+]+://[^/@]*?:([^/@]*)@", url or "")
    return m.group(1) if m and m.group(1) else None


def mask_url(url: str) -> str:
    """`url` with its password (if any) replaced by the mask."""
    m = re.match(r"([a-z+]+://[^/@]*?:)([^/@]*)(@.*)", url, re.S)
    return f"{m.group(1)}{MASK}{m.group(3)}" if m and m.group(2) else url


def load_secrets_file(path: Path) -> tuple[SecretBinding, ...]:
    """WEBHOOK_SECRETS_FILE: a YAML (or, named *.json, JSON) mapping of project patterns to one
    secret or a list of them. Errors name the file, the line and the pattern, never a secret.

        acme/*: [new-secret-for-acme, old-secret-for-acme]   # the group and its subgroups
        acme/shop: shop-secret                               # one project
        "42": secret-of-project-42                           # a project id (id-only hooks)
    """

    text = read_text(path, "WEBHOOK_SECRETS_FILE", MAX_SECRETS_FILE_BYTES)
    if path.suffix.lower() == ".json":
        entries = _secrets_entries_json(path, text)
    else:
        entries = _secrets_entries_yaml(path, text)
    problems: list[str] = []
    seen: dict[str, int] = {}
    out: list[SecretBinding] = []
    for pattern, line, items in entries:
        where = f"{path}:{line}: {pattern}"
        if not (pattern == "*" or _PROJECT_ID.fullmatch(pattern) or _PATH_GLOB.fullmatch(pattern)):
            hint = (f" (for the group, write {pattern}/*)" if re.fullmatch(r"[A-Za-z0-9_.+-]+", pattern)
                    and not pattern.isdigit() else "")
            problems.append(f"{path}:{line}: {pattern[:80]!r}: not a project path, a group glob "
                            f"(acme/*) or a numeric project id{hint}")
            continue
        key = pattern.lower()
        if key in seen:
            problems.append(f"{where}: listed twice (first on line {seen[key]})")
            continue
        seen[key] = line
        if isinstance(items, str):
            problems.append(f"{where}: {items}")
            continue
        if not items:
            problems.append(f"{where}: no secret given")
            continue
        secrets = []
        for n, (value, item_line) in enumerate(items, 1):
            label = f"{path}:{item_line}: {pattern}" + (f" secret {n}" if len(items) > 1 else "")
            if value is None:
                problems.append(f"{label}: expected a secret (a string)")
            elif len(value) < MIN_SECRET_LENGTH:
                problems.append(f"{label}: shorter than {MIN_SECRET_LENGTH} characters")
            elif value != value.strip() or "," in value:
                problems.append(f"{label}: has surrounding spaces or a comma")
            else:
                secrets.append(Secret(value))
        out.append(SecretBinding(pattern, tuple(secrets), line))
    if not entries and not problems:
        problems.append(f"{path}:1: no bindings: expected a mapping of project patterns to secrets")
    if problems:
        raise ConfigError("invalid WEBHOOK_SECRETS_FILE:\n  - " + "\n  - ".join(problems))
    return tuple(out)


_Entry = tuple[str, int, "list[tuple[str | None, int]] | str"]


def _secrets_entries_yaml(path: Path, text: str) -> list[_Entry]:


    try:
        node = compose(text)
    except YamlSyntaxError as exc:
        # the problem text names a token kind, never the offending value
        raise ConfigError(f"{path}:{exc.line or 1}: {exc.message}") from None
    if node is None:
        return []
    if not isinstance(node, MappingNode):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: the top level must be a mapping of "
                          "project patterns to secrets")
    out: list[_Entry] = []
    for key, value in node.value:
        line = key.start_mark.line + 1
        if not isinstance(key, ScalarNode):
            out.append(("?", line, "a pattern must be a plain string"))
            continue
        pattern = key.value.strip()

        def scalar(n: Any) -> str | None:
            if isinstance(n, ScalarNode) and not (n.tag.endswith(":null") and n.value in
                                                  ("", "~", "null", "Null", "NULL")):
                return n.value
            return None

        if isinstance(value, SequenceNode):
            out.append((pattern, line, [(scalar(v), v.start_mark.line + 1) for v in value.value]))
        elif isinstance(value, ScalarNode):
            v = scalar(value)
            out.append((pattern, line, [] if v is None else [(v, value.start_mark.line + 1)]))
        else:
            out.append((pattern, line, "expected a secret or a list of secrets"))
    return out


def _secrets_entries_json(path: Path, text: str) -> list[_Entry]:

    try:
        pairs = json.loads(text, object_pairs_hook=lambda p: p)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(pairs, list):
        raise ConfigError(f"{path}:1: the top level must be an object of project patterns to "
                          "secrets")
    out: list[_Entry] = []
    pos = 0
    for pattern, value in pairs:
        # Keys come in document order: the line is where this key is written after the last one.
        m = re.compile(re.escape(json.dumps(pattern)) + r"\s*:").search(text, pos)
        if m:
            pos = m.end()
        line = text.count("\n", 0, m.start() if m else pos) + 1
        pattern = pattern.strip()
        if value is None:
            out.append((pattern, line, []))
        elif isinstance(value, str):
            out.append((pattern, line, [(value, line)]))
        elif isinstance(value, list) and all(v is None or isinstance(v, (str, int, float))
                                             for v in value):
            out.append((pattern, line, [(v if isinstance(v, str) else None, line) for v in value]))
        else:
            out.append((pattern, line, "expected a secret or a list of secrets"))
    return out


def signing_key_forms(raw: str) -> list[str]:
    """The signing secret as configured and in the forms its key could be printed in."""

    out = [raw, raw.strip()]
    body = raw.strip().removeprefix("whsec_")
    out.append(body)
    try:
        key = signing_key_bytes(raw)
    except ValueError:
        return [v for v in out if v]
    r = repr(key)
    out += [r, r[2:-1], key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
            base64.urlsafe_b64encode(key).decode(), base64.b64encode(key).decode().rstrip("="),
            str(list(key))[1:-1]]
    text = key.decode("latin-1")
    if len(text.strip()) >= 8:
        out.append(text)  # a key of printable bytes shows as itself
    return [v for v in out if v]


def signing_key_bytes(raw: str) -> bytes:
    """Decode a Standard Webhooks signing secret (`whsec_<base64>`) into the HMAC key."""

    body = raw.strip()
    if body.startswith("whsec_"):
        body = body[len("whsec_"):]
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected whsec_ followed by base64 (as GitLab shows it)") from None
    if len(key) < 16:
        raise ValueError("the decoded key is shorter than 16 bytes")
    return key
