"""The service's corrections store, as `rules suggest` and `rules backtest` read it (REDIS_URL).

Both commands run outside the service, against the Redis it writes people's corrections to;
a short socket timeout keeps a wrong REDIS_URL from hanging a command.
"""

from __future__ import annotations

import redis

from tasks.ci.corrections import Corrections


def corrections_at(url: str) -> Corrections:
    """The corrections kept at `url`, a REDIS_URL as the service takes it."""
    # The embedded server's URL uses kombu's spelling of a unix socket; redis-py's is unix://.
    client = redis.Redis.from_url(url.replace("redis+socket://", "unix://"),
                                  socket_timeout=10, socket_connect_timeout=5)
    return Corrections(client)
