"""A run report beside every output (CASE.report.json), so that a result in a paper can be traced to what made it:
engine version, model name and SHA-256, device, settings, input files with their SHA-256, seconds per stage, and
the warnings the run gave."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPORT = ".report.json"  # suffix after the case's output stem


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RunReport:
    """Collects stage timings and warnings of one case; `text` renders the JSON written beside the outputs."""

    def __init__(self, command: str, metadata: Mapping[str, Any], model_folder: Path | None, device: str) -> None:
        self.command, self.metadata, self.model_folder, self.device = command, metadata, model_folder, device
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.seconds: dict[str, float] = {}
        self.warnings: list[str] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - start, 3)

    def text(self, case_id: str, images: Mapping[str, Path], settings: Mapping[str, Any],
             outputs: list[Path], dicom: Mapping[str, Any] | None = None) -> str:
        """`dicom`: modality -> the DicomSeries an image was converted from (named with its checksum)."""
        from emim import __version__

        return json.dumps({
            "command": self.command, "case": case_id, "started": self.started, "engine_version": __version__,
            "python": platform.python_version(), "device": self.device,
            "model": {"name": self.metadata.get("name"), "task": self.metadata.get("task"),
                      "folder": str(self.model_folder) if self.model_folder else None,
                      "sha256": self.metadata.get("sha256")},
            "settings": dict(settings),
            "inputs": [{"modality": modality, "path": str(path), "bytes": Path(path).stat().st_size,
                        "sha256": file_sha256(path),
                        **({"dicom": dicom[modality].to_report()} if dicom and modality in dicom else {})}
                       for modality, path in images.items()],
            "outputs": [str(path) for path in outputs],
            "seconds": self.seconds, "warnings": self.warnings,
        }, indent=2) + "\n"
