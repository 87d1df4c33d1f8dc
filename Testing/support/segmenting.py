"""`segment_case` from what a test has at hand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from emim.progress import Progress


def segment(model: Any, case: Any, output: str | Path, *, device: str = "cpu", progress: Progress | None = None,
            single: bool = True, on_windows: Callable[[int, int], None] | None = None, **options: Any) -> Path:
    """Segment `case` (a Case, a case folder or {modality: file}) with `model` (a loaded model or a model folder);
    keywords other than these are `SegmentOptions` fields. Returns the label map's path."""
    from emim.data.case_inputs import one_case
    from emim.inference.segment import SegmentOptions, segment_case
    from emim.inference.segmentation_model import SegmentationModel, load_segmentation_model

    loaded = model if isinstance(model, SegmentationModel) else load_segmentation_model(model, device)
    settings = SegmentOptions(**options)
    resolved = one_case(case, loaded.spec, loaded.takes_missing or settings.fill is not None)
    return segment_case(loaded, resolved, output, settings, progress, single, on_windows)["label"]
