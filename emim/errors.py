"""The exception types the CLI turns into a clean message and a non-zero exit instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class EmimError(Exception):
    """A problem the user can fix: the message names the file or case and says what to do."""


class DataError(EmimError):
    """A problem with one file of one case: what kind, which file, and how to fix it (also used by check-data)."""

    def __init__(self, case_id: str, file: Path | None, kind: str, message: str, fix: str) -> None:
        super().__init__(f"case {case_id}: {message} Fix: {fix}")
        self.case_id, self.file, self.kind, self.message, self.fix = case_id, file, kind, message, fix
