"""How each setting's text becomes its typed value: every converter takes the environment's text
or an already typed value (`Settings(...)` in code) and raises ValueError saying what was
wrong, never repeating a secret.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
)

from tasks.config.secrets import MIN_SECRET_LENGTH, Secret, signing_key_bytes

# An environment value or a `_FILE` longer than this is a mistake (a whole file pasted in, a
# binary mounted by accident), not a setting; refused before any parsing looks at it.
MAX_VALUE_CHARS = 64 * 1024


# Counts, sizes and seconds end up in Redis (64-bit signed) and in socket timeouts.
MAX_INT = 2**63 - 1


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    v = str(raw).strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _int(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ValueError("expected a whole number")
    n = int(raw)  # int(" 12 ") and int("1_000") are accepted, as before
    if n > MAX_INT:
        raise ValueError(f"too large (at most {MAX_INT})")
    return n


def _positive_int(raw: Any) -> int:
    n = _int(raw)
    if n <= 0:
        raise ValueError("must be a positive whole number")
    return n


def _non_negative_int(raw: Any) -> int:
    n = _int(raw)
    if n < 0:
        raise ValueError("must be zero or a positive whole number")
    return n


def _float(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError("expected a number")
    n = float(raw)
    # inf would pass `> 0` and then wait forever; nan fails every comparison silently
    if not math.isfinite(n):
        raise ValueError("must be a finite number")
    return n


def _positive_float(raw: Any) -> float:
    n = _float(raw)
    if not n > 0:
        raise ValueError("must be a positive number")
    return n


def _non_negative_float(raw: Any) -> float:
    n = _float(raw)
    if not n >= 0:
        raise ValueError("must be zero (off) or a positive number")
    return n


def _csv(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, (tuple, list)):
        return tuple(str(p) for p in raw)
    return tuple(p.strip() for p in str(raw).split(",") if p.strip())


def _port(raw: Any) -> int:
    n = _int(raw)
    if not 1 <= n <= 65535:
        raise ValueError("expected a TCP port (1-65535)")
    return n


def _log_level(raw: Any) -> str:
    v = str(raw).strip().upper()
    if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return v


def _http_url(raw: Any) -> str:
    v = str(raw).strip().rstrip("/")
    if not (v.startswith("https://") or v.startswith("http://")):
        raise ValueError("expected an http(s):// URL")
    return v


def _redis_url(raw: Any) -> str:
    # The message never repeats the value: it may hold the password.
    v = str(raw).strip()
    if not re.match(r"(rediss?|unix)://", v):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return v


def _memory(raw: Any) -> str:
    v = str(raw).strip().lower()
    if not re.fullmatch(r"[1-9][0-9]{0,15}(b|k|kb|m|mb|g|gb)?", v):
        raise ValueError("expected a size such as 1gb, 512mb or 1073741824")
    return v


def _choice(*options: str) -> BeforeValidator:
    def check(raw: Any) -> str:
        v = str(raw).strip().lower()
        if v not in options:
            raise ValueError(f"expected {' or '.join(options)}")
        return v
    return BeforeValidator(check)


def _webhook_secrets(raw: Any) -> tuple[Secret, ...]:
    if isinstance(raw, (tuple, list)):  # typed values given in code (tests): taken as they are
        return tuple(s if isinstance(s, Secret) else Secret(str(s)) for s in raw)
    secrets = tuple(Secret(s) for s in _csv(raw))
    if any(len(s.value) < MIN_SECRET_LENGTH for s in secrets):
        raise ValueError(f"every secret must be at least {MIN_SECRET_LENGTH} characters long")
    return secrets


def _alertmanager_tokens(raw: Any) -> tuple[Secret, ...]:
    if isinstance(raw, (tuple, list)):
        return tuple(s if isinstance(s, Secret) else Secret(str(s)) for s in raw)
    tokens = tuple(Secret(t) for t in _csv(raw))
    if any(len(t.value) < MIN_SECRET_LENGTH for t in tokens):
        raise ValueError(f"every token must be at least {MIN_SECRET_LENGTH} characters long")
    return tokens


def _basic_auth(raw: Any) -> Secret | None:
    if raw is None or isinstance(raw, Secret):
        return raw
    value = str(raw)
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or len(password) < MIN_SECRET_LENGTH:
        raise ValueError(f"expected `user:password` with a password of at least {MIN_SECRET_LENGTH} "
                         "characters")
    return Secret(value)


def _signing_key(raw: Any) -> Secret | None:
    if raw is None:
        return None
    value = raw.value if isinstance(raw, Secret) else str(raw)
    signing_key_bytes(value)
    return Secret(value)


def _secret(raw: Any) -> Secret | None:
    if raw is None or isinstance(raw, Secret):
        return raw
    return Secret(str(raw))


PositiveInt = Annotated[int, BeforeValidator(_positive_int)]


NonNegativeInt = Annotated[int, BeforeValidator(_non_negative_int)]


PositiveFloat = Annotated[float, BeforeValidator(_positive_float)]


NonNegativeFloat = Annotated[float, BeforeValidator(_non_negative_float)]


Csv = Annotated[tuple[str, ...], BeforeValidator(_csv)]


Flag = Annotated[bool, BeforeValidator(_bool)]


Port = Annotated[int, BeforeValidator(_port)]


OptionalSecret = Annotated[Secret | None, BeforeValidator(_secret)]
