"""A Reporter that records what it was told, for assertions (Prow's fake-client style)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.deploy.model import DeployRecord


@dataclass
class RecordingReporter:
    progress_log: list[tuple[str, str]] = field(default_factory=list)     # (deploy id, text)
    verdicts: list[tuple[str, str]] = field(default_factory=list)         # (deploy id, text)
    postmortems: list[tuple[str, str, str]] = field(default_factory=list)  # (deploy id, title, body)

    def progress(self, deploy: DeployRecord, text: str) -> None:
        self.progress_log.append((deploy.id, text))

    def verdict(self, deploy: DeployRecord, text: str) -> None:
        self.verdicts.append((deploy.id, text))

    def postmortem(self, deploy: DeployRecord, title: str, body: str) -> None:
        self.postmortems.append((deploy.id, title, body))

    def texts(self, deploy_id: str) -> list[str]:
        return [t for i, t in self.progress_log if i == deploy_id]
