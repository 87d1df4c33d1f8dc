"""The two module panels as a user meets them: Slicer's own ScriptedLoadableModule and parameterNodeWrapper (from
../shared/slicer-python), Qt on PySide6 offscreen, real MRML, the real engine behind Apply and Start.

The harness is Testing/support/slicer_gui; every click goes through the real widget's signal (`click()`, setting a
path as typing does, choosing a combo box item).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from support.slicer_gui import REPO, install, unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
MODULES = ("EMIMSegmentation", "EMIMTraining")
SHIPPED = REPO / "Resources" / "Models"
SCREENSHOTS = os.environ.get("EMIM_SCREENSHOTS")  # `make screenshots`: the click paths below leave PNGs here
# The training click path's run (crop, steps, evaluate/checkpoint every, step at which Stop is pressed): short in
# the tests; for the pictures, the shipped pretraining continued at its own crop long enough to show it learning.
TRAINING_RUN = ("", 90, 30, 62) if SCREENSHOTS else ("32", 40, 10, 12)


def snap(panels, module: str, name: str) -> None:
    """With EMIM_SCREENSHOTS set, a picture of `module`'s panel as the user sees it at this step."""
    if SCREENSHOTS:
        panels.grab(module, Path(SCREENSHOTS) / f"{name}.png")


@pytest.fixture(scope="module")
def panels(tmp_path_factory):
    harness = install(settings_folder=tmp_path_factory.mktemp("qsettings"))
    yield harness
    harness.uninstall()


@pytest.fixture
def segmentation(panels):
    panels.headless.scene.Clear(0)
    widget = panels.open("EMIMSegmentation")
    yield widget
    if widget.controller.job is not None:
        widget.controller.job.cancel()
        panels.wait(lambda: widget.controller.job is None, 60)


def parameter_widgets(widget) -> dict:
    return {w.property("SlicerParameterName"): w for w in vars(widget.ui).values()
            if hasattr(w, "property") and w.property("SlicerParameterName")}


@pytest.mark.parametrize("name", MODULES)
def test_every_bound_widget_gets_a_connector_from_slicers_own_create_gui_connector(panels, name):
    from slicer.parameterNodeWrapper import createGuiConnector

    widget = panels.open(name)
    node = widget.logic.getParameterNode()
    bound = parameter_widgets(widget)
    assert len(bound) >= 10
    for parameter, child in bound.items():
        connector = createGuiConnector(child, node.dataType(parameter))
        assert connector.widget() is child, parameter
        connector.write(node.getValue(parameter))  # and it takes the node's value
        assert connector.read() == node.getValue(parameter), parameter


def test_leaving_entering_and_unloading_the_modules_follows_slicers_lifecycle(panels):
    segmentation = panels.open("EMIMSegmentation")
    training = panels.open("EMIMTraining")  # Segmentation is left: its node is released
    assert segmentation._parameterNode is None and training._parameterNode is not None
    panels.open("EMIMSegmentation")
    assert segmentation._parameterNode is not None and training._parameterNode is None
    panels.headless.scene.Clear(0)  # File > Close Scene while the module is shown: a new node is connected
    assert segmentation._parameterNode is not None
    assert segmentation._parameterNode.parameterNode.GetScene() is panels.headless.scene


def test_training_spin_boxes_keep_their_ranges_and_special_texts(panels):
    ui = panels.open("EMIMTraining").ui
    assert (ui.batchSizeSpinBox.minimum, ui.batchSizeSpinBox.maximum) == (0, 256)
    assert ui.batchSizeSpinBox.text == "preset default"
    assert ui.learningRateSpinBox.minimum == 0.0 and ui.learningRateSpinBox.text == "preset default"
    assert ui.valCasesSpinBox.text.startswith("auto")
    assert ui.taskComboBox.count == 3 and ui.deviceComboBox.currentText == "auto"


def test_the_model_is_chosen_by_name_and_summarised_in_two_lines(panels, segmentation):
    ui = segmentation.ui
    names = [ui.modelComboBox.itemText(i) for i in range(ui.modelComboBox.count)]
    assert names[:3] == sorted(p.name for p in SHIPPED.iterdir()), names  # shipped names first
    assert ui.modelComboBox.currentText == "EMIM-starter-tiny"
    summary = ui.modelInfoLabel.text.splitlines()
    assert len(summary) == 2 and "real-case Dice WT" in summary[1], summary
    assert "machine" in ui.modelInfoLabel.toolTip  # the rest is one hover away
    assert ui.geometryLabel.text == ""  # no verdict before inputs are chosen
    assert not ui.applyButton.enabled
    snap(panels, "EMIMSegmentation", "segmentation-empty")


def test_the_parameter_node_survives_a_scene_saved_and_read_back(panels, tmp_path):
    import slicer

    widget = panels.open("EMIMTraining")
    node = widget.logic.getParameterNode()
    node.dataPath, node.task, node.steps, node.learningRate = tmp_path / "data", "finetune", 321, 0.0005
    saved = {name: node.getValue(name) for name in node.allParameters if not name.endswith("Table")}
    scene = panels.headless.scene
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    scene.Clear(0)
    assert widget.logic.getParameterNode().steps == 0  # "recipe default" again
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Import()
    restored = widget.logic.getParameterNode()
    assert {name: restored.getValue(name) for name in saved} == saved
    assert widget.ui.stepsSpinBox.value == 321 and widget.ui.dataPathLineEdit.currentPath == str(tmp_path / "data")
    assert isinstance(slicer.mrmlScene, type(scene))


def test_segment_the_sample_case_by_clicks_leaving_and_reentering_while_it_runs(panels, segmentation, tmp_path):
    ui = segmentation.ui
    ui.loadSampleButton.click()
    assigned = [segmentation.controller.selector(i).currentNode() for i in range(4)]
    assert all(assigned) and [n.GetName().split("-")[-1] for n in assigned] == ["t1n", "t1c", "t2w", "t2f"]
    assert ui.geometryLabel.text == "All inputs share one grid." and ui.applyButton.enabled
    snap(panels, "EMIMSegmentation", "segmentation-sample-loaded")
    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel"
    panels.open("EMIMTraining")  # leave the module while it runs: the job is still polled
    panels.open("EMIMSegmentation")
    assert ui.applyButton.text == "Cancel"
    seen = []
    panels.wait(lambda: seen.append(ui.progressBar.value) or segmentation.controller.job is None, 300)
    assert ui.statusLabel.text == "Done.", ui.statusLabel.text
    assert max(seen) > 0 and len(set(seen)) > 2  # the bar moved
    result = ui.outputSegmentationSelector.currentNode()
    names = [result.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(result.GetSegmentation().GetNumberOfSegments())]
    assert names and all(names)
    colours = {result.GetSegmentation().GetNthSegment(i).GetColor() for i in range(len(names))}
    assert len(colours) == len(names)
    snap(panels, "EMIMSegmentation", "segmentation-done")
    segmentation.logic.getParameterNode().trainingCases = tmp_path / "my-cases"  # after a correction, add the case
    ui.addTrainingCaseButton.click()
    assert ui.statusLabel.text.startswith("Added"), ui.statusLabel.text
    added = tmp_path / "my-cases" / "BraTS-SYN-00001-000-corrected"
    assert (added / "BraTS-SYN-00001-000-corrected-seg.nii.gz").is_file()
    if SCREENSHOTS:
        from support.slicer_scene import render_slice_png

        render_slice_png(panels.headless, assigned[1], result, Path(SCREENSHOTS) / "segmentation-slice.png")


def test_cancel_stops_a_running_segmentation(panels, segmentation):
    segmentation.ui.loadSampleButton.click()
    segmentation.ui.applyButton.click()
    segmentation.ui.applyButton.click()  # the same button reads "Cancel" while it runs
    panels.wait(lambda: segmentation.controller.job is None, 120)
    assert segmentation.ui.statusLabel.text == "Cancelled."
    assert segmentation.ui.applyButton.text == "Apply"


def test_a_model_that_refuses_shows_its_message_in_the_panel(panels, segmentation, tmp_path, caplog):
    broken = tmp_path / "truncated-model"
    shutil.copytree(SHIPPED / "EMIM-starter-tiny", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    segmentation.controller.useModelFolder(str(broken))
    assert segmentation.ui.modelComboBox.currentText.startswith("truncated-model")
    segmentation.ui.loadSampleButton.click()
    with caplog.at_level(logging.ERROR):
        segmentation.ui.applyButton.click()
        panels.wait(lambda: segmentation.controller.job is None, 120)
    status = segmentation.ui.statusLabel.text
    assert status.startswith("Failed:") and "model.safetensors" in status and "Traceback" not in status, status
    assert any("model.safetensors" in record.getMessage() for record in caplog.records)  # the error display


def test_closing_the_scene_cancels_a_running_segmentation(panels, segmentation):
    segmentation.ui.loadSampleButton.click()
    segmentation.ui.applyButton.click()
    panels.headless.scene.Clear(0)  # File > Close Scene: the inputs are gone
    panels.wait(lambda: segmentation.controller.job is None, 120)
    assert segmentation.ui.statusLabel.text == "Cancelled."
    scene = panels.headless.scene
    assert not scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")


def test_the_masked_reconstruction_view_of_the_shipped_pretraining(panels, segmentation):
    import slicer

    ui = segmentation.ui
    ui.modelComboBox.currentIndex = ui.modelComboBox.findText("EMIM-starter-tiny-pretraining")
    assert not ui.lookInsideCollapsibleButton.isHidden() and ui.fillMissingComboBox.isHidden()  # mask and seed shown
    ui.loadSampleButton.click()
    ui.applyButton.click()
    panels.wait(lambda: segmentation.controller.job is None, 300)
    assert ui.statusLabel.text == "Done.", ui.statusLabel.text
    assert panels.app.layout.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutThreeOverThreeView
    shown = {view: panels.app.layout.sliceWidget(view).mrmlSliceCompositeNode() for view in ("Red", "Yellow", "Green")}
    names = {view: panels.headless.scene.GetNodeByID(node.GetBackgroundVolumeID()).GetName()
             for view, node in shown.items()}
    assert names["Red"].endswith("t1n") and names["Yellow"] != names["Green"] != names["Red"], names
    assert all(node.GetLabelVolumeID() for node in shown.values())  # the hybrid mask over each view


def test_a_missing_flair_with_the_dropout_model_and_filled_by_the_pretraining(panels, segmentation):
    ui = segmentation.ui
    ui.loadSampleButton.click()
    panels.headless.scene.RemoveNode(segmentation.controller.selector(3).currentNode())  # the case has no FLAIR
    assert segmentation.controller.selector(3).currentNode() is None
    assert not ui.applyButton.enabled  # the starter needs all four
    ui.modelComboBox.currentIndex = ui.modelComboBox.findText("EMIM-starter-tiny-dropout")
    assert ui.applyButton.enabled and "T2 FLAIR" in ui.geometryLabel.text
    snap(panels, "EMIMSegmentation", "segmentation-missing-flair")
    ui.modelComboBox.currentIndex = ui.modelComboBox.findText("EMIM-starter-tiny")
    ui.fillMissingComboBox.currentIndex = ui.fillMissingComboBox.findText("EMIM-starter-tiny-pretraining")
    assert segmentation.logic.getParameterNode().fillMissing == "EMIM-starter-tiny-pretraining"
    assert ui.applyButton.enabled


def test_check_pretrain_stop_resume_finetune_and_export_by_clicks(panels, brats_mini, tmp_path):
    widget = panels.open("EMIMTraining")
    ui, node = widget.ui, widget.logic.getParameterNode()
    ui.dataPathLineEdit.currentPath = str(brats_mini)  # as typed or browsed
    assert node.dataPath == brats_mini and not ui.startButton.enabled
    ui.checkDataButton.click()
    assert ui.dataTableView.model().rowCount() == 3, ui.dataSummaryLabel.text
    assert "masks:" in ui.dataSummaryLabel.text  # the collapse report, for pretraining
    ui.runFolderPathLineEdit.currentPath = str(tmp_path / "run")
    ui.startFromComboBox.currentIndex = ui.startFromComboBox.findText("pretraining")  # the shipped one, continued
    ui.presetComboBox.currentIndex = ui.presetComboBox.findText("tiny")
    crop, steps, every, stop_at = TRAINING_RUN
    ui.cropLineEdit.setText(crop)
    ui.cropLineEdit.editingFinished.emit()
    ui.batchSizeSpinBox.value, ui.stepsSpinBox.value = 1, steps
    ui.evalEverySpinBox.value, ui.checkpointEverySpinBox.value = every, every
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cpu")
    snap(panels, "EMIMTraining", "training-checked")
    assert ui.startButton.enabled, ui.startButton.toolTip
    ui.startButton.click()
    panels.wait(lambda: widget.controller.job is not None and (widget.controller.job.step or 0) >= stop_at, 600)
    assert ui.chartSelector.currentNode() is not None and ui.progressBar.value > 0
    assert ui.stopButton.enabled and not ui.startButton.enabled
    assert "--init EMIM-starter-tiny-pretraining" in ui.logTextEdit.toPlainText()
    snap(panels, "EMIMTraining", "training-running")
    if SCREENSHOTS:
        from EMIMTrainingLib.chart_render import render_charts_png

        render_charts_png(widget.controller.follower.ordered_charts(), Path(SCREENSHOTS) / "training-charts.png")
    ui.stopButton.click()
    panels.wait(lambda: widget.controller.job is None, 120)
    assert ui.progressLabel.text == "Stopped; Resume continues it." and ui.resumeButton.enabled
    snap(panels, "EMIMTraining", "training-stopped")
    ui.resumeButton.click()
    panels.wait(lambda: widget.controller.job is None, 240)
    assert ui.progressLabel.text == "Finished.", ui.logTextEdit.toPlainText()[-2000:]

    ui.taskComboBox.currentIndex = ui.taskComboBox.findText("finetune")  # fine-tune from this pretraining
    ui.pretrainedPathLineEdit.currentPath = str(tmp_path / "run")
    ui.runFolderPathLineEdit.currentPath = str(tmp_path / "finetune")
    ui.stepsSpinBox.value, ui.valCasesSpinBox.value = 4, 0
    ui.startButton.click()
    panels.wait(lambda: widget.controller.job is None, 240)
    assert ui.progressLabel.text == "Finished.", ui.logTextEdit.toPlainText()[-2000:]
    assert f"--pretrained {tmp_path / 'run'}" in ui.logTextEdit.toPlainText()
    ui.exportFolderPathLineEdit.currentPath = str(tmp_path / "model")
    ui.exportButton.click()  # exports and hands the model on (Slicer's testing mode answers "No" to "Open now?")
    assert (tmp_path / "model" / "metadata.json").is_file(), ui.logTextEdit.toPlainText()[-1500:]
    segmentation = panels.open("EMIMSegmentation")
    assert segmentation.logic.getParameterNode().model == str(tmp_path / "model")
    assert segmentation.controller.model.task == "segmentation"
