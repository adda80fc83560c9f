"""kombu's Redis transport, with a full Redis counted as a lost connection.

Stock kombu classes `OutOfMemoryError` (Redis at `maxmemory` with `noeviction`, as the embedded
server runs) as an ordinary response error, and Celery stops the whole worker on it
("Unrecoverable error") though the condition is temporary and the process could simply wait.
Counted as a connection error, the consumer backs off and reconnects instead. A message that kombu
had popped but could not record as unacked is not lost: the engine (tasks/engine/schedule.py) sends every
item that has not finished again after `lost_after`.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.redis import Transport as RedisTransport
from redis.exceptions import OutOfMemoryError

ALIAS = "devops-agent-redis"


class Transport(RedisTransport):
    connection_errors = (*RedisTransport.connection_errors, OutOfMemoryError)
    channel_errors = tuple(e for e in RedisTransport.channel_errors if e is not OutOfMemoryError)


# kombu resolves transports by alias; an alias without "." or ":" is also accepted in a
# `alias+socket://` URL, which is how kombu spells a Redis unix socket.
TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")


def broker_url_for(url: str) -> tuple[str, str | None]:
    """(url, transport) for Celery: plain and unix-socket Redis URLs use this transport; any
    other scheme (rediss://, sentinel://) keeps kombu's own."""
    if url.startswith("redis+socket://"):
        return ALIAS + url[len("redis"):], ALIAS
    if url.startswith("redis://"):
        return url, ALIAS
    return url, None
