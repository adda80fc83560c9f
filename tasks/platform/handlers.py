"""Handler registry: one module per handler, each registering for event kinds with a help record.

Like Prow's plugins, every handler declares what it does and which commands it answers; `/help`
and the README's command table are generated from these records, and configuration that names an
unknown handler fails at start-up because the name is not in the registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The built-in handlers, in the order they run for an event.
BUILTIN_MODULES = (
    "tasks.ci.pipeline_failed",
    "tasks.ci.job_failed",
    "tasks.ci.pipeline_passed",
    "tasks.chatops.label_triggers",
    "tasks.ci.classify_labels",
    "tasks.chatops.note_handler",
    "tasks.deploy.deployment_hook",
    "tasks.incidents.handler",
)


@dataclass(frozen=True)
class CommandHelp:
    usage: str
    description: str
    examples: tuple[str, ...] = ()
    who: str = "anyone with Developer access"


@dataclass(frozen=True)
class HelpRecord:
    description: str
    commands: tuple[CommandHelp, ...] = ()
    config: str = ""


@dataclass(frozen=True)
class Handler:
    name: str
    kinds: tuple[str, ...]
    fn: Callable[[Any, Any], Any]
    help: HelpRecord


@dataclass
class Registry:
    handlers: dict[str, Handler] = field(default_factory=dict)

    def add(self, handler: Handler) -> None:
        if handler.name in self.handlers and self.handlers[handler.name].fn is not handler.fn:
            raise ValueError(f"two handlers are named {handler.name!r}")
        self.handlers[handler.name] = handler

    def for_kind(self, kind: str, active: tuple[str, ...] = ()) -> list[Handler]:
        """Handlers for `kind`: all in registration order, or those in `active`, in its order."""
        chosen = [self.handlers[n] for n in active if n in self.handlers] if active \
            else list(self.handlers.values())
        return [h for h in chosen if kind in h.kinds]


REGISTRY = Registry()


def handler(name: str, kinds: tuple[str, ...], help: HelpRecord) -> Callable:
    """Decorator: register `fn(event, ctx)` for the given event kinds."""

    def wrap(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        REGISTRY.add(Handler(name=name, kinds=kinds, fn=fn, help=help))
        return fn

    return wrap


def load_handlers(active: tuple[str, ...] = (), extra_modules: tuple[str, ...] = ()) -> Registry:
    """Import the built-in and extra handler modules; refuse unknown names in `active`."""
    for module in (*BUILTIN_MODULES, *extra_modules):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module and module in extra_modules:
                raise ValueError(f"EXTRA_HANDLER_MODULES: no module named {module!r}") from None
            raise
    # Handlers run in the order the modules are listed, whatever imported one of them first
    # (a test, a command module): registration order alone would make it depend on imports.
    order = {m: i for i, m in enumerate((*BUILTIN_MODULES, *extra_modules))}
    REGISTRY.handlers = dict(sorted(REGISTRY.handlers.items(),
                                    key=lambda kv: order.get(kv[1].fn.__module__, len(order))))
    unknown = [name for name in active if name not in REGISTRY.handlers]
    if unknown:
        known = ", ".join(sorted(REGISTRY.handlers))
        raise ValueError(f"HANDLERS names unknown handler(s) {', '.join(unknown)}; known: {known}")
    return REGISTRY
