"""A sentry_sdk transport that keeps the events it is given, for tests that read what would
have been sent to Sentry."""

from __future__ import annotations

from sentry_sdk.transport import Transport


class Recording(Transport):
    def __init__(self, options=None):
        super().__init__(options)
        self.events: list[dict] = []

    def capture_envelope(self, envelope):
        for item in envelope.items:
            event = item.get_event() or item.get_transaction_event()
            if event is not None:
                self.events.append(event)
