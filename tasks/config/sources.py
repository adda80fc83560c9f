"""Where settings come from: one environment variable per field, or the file its `<NAME>_FILE`
names, with the origin of each value kept for `config check`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from tasks.config.converters import (
    _CONTROL,
    MAX_VALUE_CHARS,
)


def var(name: str, default: Any = None, *, secret: bool = False, file: bool | None = None,
        masked: bool = False, keep_empty: bool = False, doc: str = "") -> Any:
    """A field read from the environment variable `name`.

    secret: never shown, never repeated in an error; `<name>_FILE` may hold it instead.
    masked: shown with its password hidden and never repeated in an error (a URL).
    keep_empty: an empty value means something (e.g. "off") instead of "unset"."""
    extra: dict[str, Any] = {"env": name, "secret": secret,
                             "file": secret if file is None else file,
                             "masked": masked or secret, "keep_empty": keep_empty}
    return Field(default, json_schema_extra=extra, description=doc or None)


def _meta(info: FieldInfo) -> dict[str, Any] | None:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) and "env" in extra else None


class _Unusable:
    """Stands in for a value the source could not read (a `_FILE` that is missing, empty, too
    large); the field's validator turns it into an error naming the variable, so every problem
    is reported in one pass together with pydantic's own."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return "<unusable>"


@dataclass(frozen=True)
class _SecretsFile:
    path: Path


class EnvironSource(PydanticBaseSettingsSource):
    """Reads each field's variable from `environ` (default os.environ), and `<NAME>_FILE` for
    the fields that allow it; records where each value came from for `config check`.

    Why not pydantic-settings' own EnvSettingsSource and `secrets_dir`: `secrets_dir` reads files
    named after the field from one directory and passes over a missing one in silence, while
    Kubernetes and Docker secrets are mounted wherever the operator chose and `<NAME>_FILE`
    (as in the official postgres and redis images) is what we document: a `_FILE` that names
    nothing must stop start-up. Our own source also treats an empty variable as unset (as
    before), refuses oversized values before parsing, and reads any mapping, so tests and
    `replay` pass their own environment without touching os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None
                 ) -> None:
        super().__init__(settings_cls)
        self.environ = os.environ if environ is None else environ
        self.origins: dict[str, str] = {}  # field -> "environment" or "file <path>"
        self.raw: dict[str, str] = {}      # field -> the text read (for messages, non-secrets only)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._read(field_name, field), field_name, False

    def _read(self, name: str, info: FieldInfo) -> Any:
        meta = _meta(info)
        if meta is None:
            return None
        var_name: str = meta["env"]
        direct = self.environ.get(var_name)
        path = self.environ.get(f"{var_name}_FILE") if meta["file"] else None
        if direct and path:
            return _Unusable(f"{var_name} and {var_name}_FILE are both set; keep one")
        if path:
            self.origins[name] = f"file {path}"
            return self._read_file(var_name, path)
        if direct is None or (direct == "" and not meta["keep_empty"]):
            return None
        self.origins[name] = "environment"
        if len(direct) > MAX_VALUE_CHARS:
            return _Unusable(f"longer than {MAX_VALUE_CHARS} characters")
        if not meta["secret"] and _CONTROL.search(direct):
            return _Unusable("contains control characters (a line break, a tab, NUL...)")
        self.raw[name] = direct
        return direct

    @staticmethod
    def _read_file(var_name: str, path: str) -> Any:
        where = f"{var_name}_FILE"
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_VALUE_CHARS + 1)
        except OSError as exc:
            return _Unusable(f"{where}: cannot read {path}: {exc.strerror}")
        if len(data) > MAX_VALUE_CHARS:
            return _Unusable(f"{where}: {path} is larger than {MAX_VALUE_CHARS} bytes")
        try:
            # A trailing newline (echo, most editors, `kubectl create secret --from-file`) is
            # not part of the secret; nor is surrounding space.
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            return _Unusable(f"{where}: {path} is not UTF-8 text")
        if not text:
            # A mount that came up empty; carrying on as if unset would hide it.
            return _Unusable(f"{where}: {path} is empty")
        return text

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            value = self._read(name, info)
            if value is not None:
                out[name] = value
        if "webhook_secrets_file" in out and isinstance(out["webhook_secrets_file"], str):
            out["webhook_bindings"] = _SecretsFile(Path(out["webhook_secrets_file"]))
            self.origins["webhook_bindings"] = f"file {out['webhook_secrets_file']}"
        return out




def _short(raw: str) -> str:
    return raw if len(raw) <= 80 else raw[:77] + "..."
