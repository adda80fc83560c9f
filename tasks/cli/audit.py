"""`devops-agent audit [--project P] [--since T]`: who ran what, where, and what came of it."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

import orjson

from tasks.config.settings import ConfigError, load_settings
from tasks.intake.inbox import Inbox, record_key
from tasks.platform import audit
from tasks.platform.audit import parse_since
from tasks.platform.store import redis_client


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="show the ChatOps audit trail, newest first")
    p.add_argument("--project", help="project id or full path")
    p.add_argument("--since", help="30m, 2h, 7d, a Unix time or an ISO date")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=run)

    d = sub.add_parser("deliveries", help="list recent webhook deliveries from the inbox, or run "
                                          "one again")
    d.add_argument("--limit", type=int, default=50)
    d.add_argument("--since", help="30m, 2h, 7d, a Unix time or an ISO date")
    d.add_argument("--rerun", metavar="DELIVERY_ID",
                   help="process a recorded delivery again (its handlers re-check everything, so "
                        "effects that already happened are not repeated)")
    d.set_defaults(func=deliveries)


def _store(args: argparse.Namespace):
    # Lazy, like Inbox below: the Redis client library loads only for the commands that read
    # the store (every command's module is imported to register its arguments).

    settings = load_settings(require_secret=False)
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set (for the embedded default, use "
                         "REDIS_URL=unix://$PWD/devops-agent-data/redis/redis.sock)")
    return settings, redis_client(settings.redis_url)


def deliveries(args: argparse.Namespace) -> int:

    try:
        since = parse_since(args.since)
        settings, client = _store(args)
    except (ValueError, ConfigError) as exc:
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    inbox = Inbox(client, queue=settings.task_queue, redeliver_after=settings.redeliver_after_seconds)
    try:
        if args.rerun:
            if not client.exists(record_key(args.rerun)):
                print(f"devops-agent: no delivery {args.rerun!r} in the inbox", file=sys.stderr)
                return 1
            inbox.requeue(args.rerun)
            print(f"re-queued {args.rerun}")
            return 0
        for d in inbox.recent(limit=max(1, args.limit), since=since):
            when = dt.datetime.fromtimestamp(d["received"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{when}Z  {d['delivery_id']}  {d['event']:<20} {d['status']:<9} "
                  f"attempts={d['attempts']}  key={d['idempotency_key']}")
    except Exception as exc:  # noqa: BLE001 - any Redis trouble is reported the same way
        print(f"devops-agent: cannot read the inbox: {exc}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since)
        _, client = _store(args)
    except (ValueError, ConfigError) as exc:
        print(f"devops-agent: {exc}", file=sys.stderr)
        return 2
    try:
        entries = audit.query(client, project=args.project, since=since,
                              limit=max(1, args.limit))
    except Exception as exc:  # noqa: BLE001 - any Redis trouble is reported the same way
        print(f"devops-agent: cannot read the audit trail: {exc}", file=sys.stderr)
        return 1
    for e in entries:
        if args.format == "json":
            print(orjson.dumps(e).decode())
            continue
        when = dt.datetime.fromtimestamp(e["at"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        refused = [g["gate"] for g in e.get("gates", []) if not g.get("passed")]
        extra = f" refused by {', '.join(refused)}" if refused else ""
        forced = " (forced)" if e.get("forced") else ""
        print(f"{when}Z  {e.get('project_path') or e.get('project')} {e.get('where')}  "
              f"@{e.get('user')}  {e.get('command')!s:40}  {e.get('outcome')}{extra}{forced}")
    return 0
