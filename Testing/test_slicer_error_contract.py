"""One error contract: every engine failure (a data error, a model error, a bug) reaches a Logic caller as the
engine's own message, read from its `error` event (no stderr scraping), in the module's own error class."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from support.slicer_scene import slicer, slicer_app  # noqa: F401  (fixture)

from EMIMCommonLib.sample_data import sample_case_folder
from EMIMSegmentationLib.errors import EMIMSegmentationError
from EMIMSegmentationLib.logic import SegmentationLogic

BUGGY_ENGINE = Path(__file__).parent / "support" / "engine_with_a_bug.py"


def _segment_and_fail(logic: SegmentationLogic, inputs: dict, model: Path) -> tuple[str, list[str]]:
    """(message of the raised error, the engine's `error` events as the job logged them)."""
    logged: list[str] = []
    with pytest.raises(EMIMSegmentationError) as raised:
        logic.segment(inputs, model, device="cpu", overlap=0.0, waitForCompletion=True, logCallback=logged.append)
    events = [line.removeprefix("Error: ") for line in logged if line.startswith("Error: ")]
    return str(raised.value), events


@pytest.fixture
def sample_inputs(slicer_app):
    return SegmentationLogic().loadCase(sample_case_folder())


def test_a_data_error_reaches_the_caller_as_the_engines_message(sample_inputs, tiny_segmentation_model):
    slicer.util.updateVolumeFromArray(sample_inputs["t2f"], np.zeros_like(
        slicer.util.arrayFromVolume(sample_inputs["t2f"])))
    message, events = _segment_and_fail(SegmentationLogic(), sample_inputs, tiny_segmentation_model)
    assert events == [message] and "is empty (every voxel is 0)" in message and "Fix:" in message


def test_a_model_error_reaches_the_caller_as_the_engines_message(sample_inputs, tiny_segmentation_model, tmp_path):
    broken = Path(shutil.copytree(tiny_segmentation_model, tmp_path / "model"))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a download cut short
    message, events = _segment_and_fail(SegmentationLogic(), sample_inputs, broken)
    assert events == [message] and "model.safetensors" in message


def test_a_bug_in_the_engine_reaches_the_caller_as_one_line_with_what_to_do(sample_inputs, tiny_segmentation_model):
    logic = SegmentationLogic()
    logic.engineCommand = lambda subcommand, arguments: [sys.executable, str(BUGGY_ENGINE), subcommand, *arguments,
                                                         "--progress", "json"]
    message, events = _segment_and_fail(logic, sample_inputs, tiny_segmentation_model)
    assert events == [message]
    assert message.startswith("unexpected RuntimeError: index 7 is out of bounds") and "--debug" in message
