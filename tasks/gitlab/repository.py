"""Repository reads (refs, trees, raw files) and snippets, for plans read at one SHA."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tasks.gitlab.errors import FileTooLarge
from tasks.gitlab.session import ProjectRef, Session


class Repository(Session):
    def resolve_ref(self, project: ProjectRef, ref: str) -> str:
        """The commit SHA a branch, tag or commit id names now (GET commits/:ref accepts
        each). NotFound when the project has no such ref."""
        commits = self._project(project).commits
        return self._call("resolve_ref", lambda: str(commits.get(ref).id))

    def repository_tree(self, project: ProjectRef, path: str, ref: str, *,
                        limit: int = 1000) -> list[dict]:
        """Entries (`type` blob or tree, `path`) under `path` at `ref`, recursively, at most
        `limit` of them (reading pages only as far as needed)."""
        return self._first(limit, "repository_tree", self._project(project).repository_tree,
                           path=path, ref=ref, recursive=True)

    def file_raw(self, project: ProjectRef, path: str, ref: str, *, max_bytes: int) -> bytes:
        """A file's bytes at `ref`, streamed; FileTooLarge past `max_bytes` (nothing more is
        read)."""
        files = self._project(project).files

        def read() -> bytes:
            chunks: Iterator[bytes] = files.raw(file_path=path, ref=ref, streamed=True,
                                                iterator=True, chunk_size=64 * 1024)
            buf = bytearray()
            try:
                for chunk in chunks:
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise FileTooLarge(f"file_raw: {path} is larger than {max_bytes} bytes")
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()
            return bytes(buf)

        return self._call("file_raw", read)

    def create_snippet(self, project: ProjectRef, title: str, files: list[dict],
                       visibility: str = "private", description: str | None = None) -> dict:
        """A project snippet of `files` ([{file_path, content}]); private: the project's
        members see it, as they see the thread that links it."""
        fields: dict[str, Any] = {"title": title, "visibility": visibility, "files": files}
        if description:
            fields["description"] = description
        snippets = self._project(project).snippets
        return self._write("create_snippet", project, {"title": title},
                           lambda: self._plain(snippets.create(fields)))
