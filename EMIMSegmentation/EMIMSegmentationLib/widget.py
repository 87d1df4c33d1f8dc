"""The module panel (Slicer only): models by name, selectors titled from the model, Apply/Cancel, progress and log.

All work is delegated to the Logic; this file only moves values between the GUI, the parameter node and it.
"""

from __future__ import annotations

from pathlib import Path

import qt
import slicer

from .errors import EMIMSegmentationError
from .i18n import tr
from EMIMCommonLib.job import SUCCEEDED

from .logic import FAST_OVERLAP
from .metadata import ModelInfo
from EMIMCommonLib.sample_data import sample_case_folder

MAX_INPUTS = 4
POLL_MS = 200
RECENT_MODELS_KEY = "EMIMSegmentation/RecentModels"  # QSettings: model folders chosen with Browse, newest first
RECENT_MODELS = 5


class WidgetController:
    """Owns `ui` (from EMIMSegmentation.ui) and the running job."""

    def __init__(self, ui, logic) -> None:
        self.ui, self.logic = ui, logic
        self.parameterNode = None  # set by the module widget's lifecycle (setParameterNode)
        self.model: ModelInfo | None = None
        self.job = None
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.onPoll)
        self.ui.loadCaseButton.clicked.connect(self.onLoadCase)
        self.ui.loadSampleButton.clicked.connect(self.onLoadSample)
        self.ui.modelComboBox.currentIndexChanged.connect(self.onModelChosen)
        self.ui.modelBrowseButton.clicked.connect(self.onBrowseModel)
        self.ui.fillMissingComboBox.currentIndexChanged.connect(self.onFillChosen)
        self.ui.applyButton.clicked.connect(self.onApply)
        self.ui.addTrainingCaseButton.clicked.connect(self.onAddTrainingCase)
        self.ui.outputSegmentationSelector.currentNodeChanged.connect(self.updateApplyState)
        for index in range(MAX_INPUTS):
            self.selector(index).currentNodeChanged.connect(self.updateApplyState)

    def setParameterNode(self, node) -> None:
        """The panel now shows `node` (None while the module is left or the scene closes)."""
        self.parameterNode = node
        if node is not None:
            if not node.model or not self.logic.modelFolder(node.model).is_dir():
                node.model = self.logic.defaultModelPath()
            self.listModels()

    def onParameterNodeModified(self) -> None:
        """The node changed (a saved scene read back, handOff from E-MIM Training): show its model."""
        if self.parameterNode is not None and self.parameterNode.model != self.chosen(self.ui.modelComboBox):
            self.listModels()
        self.updateApplyState()

    def sceneClosing(self) -> None:
        """File > Close Scene: a running job's inputs and output nodes are going, so it is cancelled."""
        if self.job is not None:
            self.job.cancel()

    def shutdown(self) -> None:
        """The application is closing: cancel a running job."""
        self.timer.stop()
        if self.job is not None:
            self.job.cancel()

    # -- model lists -------------------------------------------------------------------------------------------------

    def recentModels(self) -> list[str]:
        stored = qt.QSettings().value(RECENT_MODELS_KEY) or []
        return [str(p) for p in ([stored] if isinstance(stored, str) else stored) if p]  # one entry reads as a str

    def listModels(self) -> None:
        """The model list: shipped models by name, then recent folders; the fill list: None and the pretrainings."""
        p = self.parameterNode
        models = [(path.name, path.name) for path in self.logic.bundledModels()]
        models += [(f"{Path(folder).name} ({folder})", folder) for folder in self.recentModels()]
        if p.model and p.model not in [value for _, value in models]:
            models.append((p.model, p.model))
        fills = [(tr("None"), "")] + [(label, value) for label, value in models if self.isPretraining(value)]
        self.fill(self.ui.modelComboBox, models, p.model)
        self.fill(self.ui.fillMissingComboBox, fills, p.fillMissing)
        self.onModelChanged(p.model)

    def isPretraining(self, model: str) -> bool:
        try:
            return self.logic.readModel(model).task == "pretraining"
        except EMIMSegmentationError:
            return False

    @staticmethod
    def fill(combo, entries: list[tuple[str, str]], chosen: str) -> None:
        """Replace `combo`'s items (label shown, value kept as item data) and select `chosen`, without signals."""
        blocked = combo.blockSignals(True)
        combo.clear()
        for label, value in entries:
            combo.addItem(label, value)
        values = [value for _, value in entries]
        combo.currentIndex = values.index(chosen) if chosen in values else -1
        combo.blockSignals(blocked)

    @staticmethod
    def chosen(combo) -> str:
        return (combo.itemData(combo.currentIndex) or "") if combo.currentIndex >= 0 else ""

    def onModelChosen(self, *unused) -> None:
        if self.parameterNode is not None:
            self.parameterNode.model = self.chosen(self.ui.modelComboBox)
            self.onModelChanged(self.parameterNode.model)

    def onFillChosen(self, *unused) -> None:
        if self.parameterNode is not None:
            self.parameterNode.fillMissing = self.chosen(self.ui.fillMissingComboBox)

    def onBrowseModel(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(None, tr("Choose an exported E-MIM model folder"))
        if folder:
            self.useModelFolder(folder)

    def useModelFolder(self, folder: str) -> None:
        """What Browse does with the chosen folder: remember it among the recent models and choose it."""
        recent = [folder] + [f for f in self.recentModels() if f != folder]
        qt.QSettings().setValue(RECENT_MODELS_KEY, recent[:RECENT_MODELS])
        self.parameterNode.model = folder
        self.listModels()

    def selector(self, index: int):
        return getattr(self.ui, f"inputSelector{index}")

    def inputs(self) -> dict:
        if self.model is None:
            return {}
        return {m.name: self.selector(i).currentNode() for i, m in enumerate(self.model.modalities)}

    def fillMissing(self) -> str | None:
        """The pretraining chosen to synthesise missing inputs, if any (segmentation models only)."""
        if self.model is None or self.model.task != "segmentation" or self.parameterNode is None:
            return None
        return self.parameterNode.fillMissing or None

    def log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)
        slicer.app.processEvents()

    def onModelChanged(self, model: str) -> None:
        self.model = None
        self.ui.modelInfoLabel.text, self.ui.modelInfoLabel.toolTip = tr("No model chosen."), ""
        try:
            self.model = self.logic.readModel(model) if model else None
        except EMIMSegmentationError as error:
            self.ui.modelInfoLabel.text = str(error)
        if self.model is not None:
            if len(self.model.modalities) > MAX_INPUTS:
                self.ui.modelInfoLabel.text = tr("This model needs {n} inputs; this module shows at most {m}.").format(
                    n=len(self.model.modalities), m=MAX_INPUTS)
                self.model = None
            else:
                self.ui.modelInfoLabel.text = self.model.summary()
                self.ui.modelInfoLabel.toolTip = self.model.details()
        modalities = self.model.modalities if self.model else ()
        for index in range(MAX_INPUTS):
            visible = index < len(modalities)
            getattr(self.ui, f"inputLabel{index}").visible = visible
            self.selector(index).visible = visible
            if visible:
                getattr(self.ui, f"inputLabel{index}").text = modalities[index].title + ":"
        if self.model is not None:
            for index, node in enumerate(self.logic.autoAssignInputs(self.model).values()):
                if node is not None and self.selector(index).currentNode() is None:
                    self.selector(index).setCurrentNode(node)
        self.ui.lookInsideCollapsibleButton.visible = bool(self.model and self.model.task == "pretraining")
        segmentation = bool(self.model and self.model.task == "segmentation")
        self.ui.fillMissingLabel.visible = self.ui.fillMissingComboBox.visible = segmentation
        self.updateApplyState()

    def onLoadCase(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(None, tr("Choose a case folder"))
        if folder:
            self.loadAndShow(folder)

    def onLoadSample(self) -> None:
        self.loadAndShow(sample_case_folder())

    def loadAndShow(self, folder) -> None:
        """Load a case folder's volumes, show the first one and assign them to the model's inputs."""
        with slicer.util.tryWithErrorDisplay(tr("Failed to load the case."), waitCursor=True):
            loaded = self.logic.loadCase(folder, self.model)
            slicer.util.setSliceViewerLayers(background=next(iter(loaded.values())), fit=True)
            self.onModelChanged(self.parameterNode.model)

    def updateApplyState(self, *unused) -> None:
        if self.job is not None or self.parameterNode is None:
            return
        if self.model is None:
            problems = [tr("Choose an exported model folder.")]
        else:
            problems = self.logic.inputProblems(self.inputs(), self.model, self.fillMissing() is not None)
        given = [node for node in self.inputs().values() if node is not None]
        geometry = [] if problems else self.logic.geometryMismatches(self.inputs(), self.model)
        if geometry:
            self.ui.geometryLabel.text = "\n".join(geometry)
        else:  # a verdict only once there is something to compare
            self.ui.geometryLabel.text = tr("All inputs share one grid.") if len(given) > 1 and not problems else ""
        self.ui.applyButton.enabled = not problems
        self.ui.applyButton.toolTip = "\n".join(problems) if problems else tr("Run the model on the inputs.")
        self.ui.addTrainingCaseButton.enabled = bool(
            not problems and self.model.task == "segmentation" and self.parameterNode.trainingCases is not None
            and self.ui.outputSegmentationSelector.currentNode() is not None
            and all(node is not None for node in self.inputs().values()))
        empty = [m.title for m in (self.model.modalities if self.model else ()) if self.inputs().get(m.name) is None]
        if not problems and empty:  # inputs left empty: a model fine-tuned with modality dropout, or filling
            missing = self.logic.missingSummary(self.inputs(), self.model, self.fillMissing())
            self.ui.geometryLabel.text = "\n".join(t for t in (self.ui.geometryLabel.text, missing) if t)

    def trainingCaseName(self) -> str:
        """The added case's name: the reference input's case (its volume name without the modality), '-corrected'."""
        reference = self.selector(0).currentNode()
        name = reference.GetName() if reference is not None else "case"
        first = self.model.modalities[0].name if self.model else ""
        return (name[: -len(first) - 1] if first and name.endswith(f"-{first}") else name) + "-corrected"

    def onAddTrainingCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(tr("The case could not be added."), waitCursor=True):
            case = self.logic.addTrainingCase(self.inputs(), self.ui.outputSegmentationSelector.currentNode(),
                                              self.model, self.parameterNode.trainingCases, self.trainingCaseName())
            self.ui.statusLabel.text = tr("Added {case}; adapt the model to these cases in E-MIM Training.").format(
                case=case)

    def onApply(self) -> None:
        if self.job is not None:
            self.job.cancel()
            return
        from EMIMCommonLib.install import ensure_dependencies

        with slicer.util.tryWithErrorDisplay(tr("Failed to start the engine."), waitCursor=True):
            if not ensure_dependencies():
                return
            common = dict(device=self.ui.deviceComboBox.currentText, resample=self.ui.resampleCheckBox.checked,
                          waitForCompletion=False, logCallback=self.log, progressCallback=self.onProgress)
            if self.model.task == "segmentation":
                output = self.ui.outputSegmentationSelector.currentNode()
                self.job = self.logic.segment(self.inputs(), self.model, output, show3D=self.ui.show3DCheckBox.checked,
                                              overlap=FAST_OVERLAP if self.ui.fastCheckBox.checked else None,
                                              fillMissing=self.fillMissing(), **common)
            elif self.model.task == "pretraining":
                self.job = self.logic.reconstruct(self.inputs(), self.model, self.ui.maskComboBox.currentText,
                                                  self.ui.seedSpinBox.value, **common)
            else:
                self.job = self.logic.classify(self.inputs(), self.model, self.ui.outputTableSelector.currentNode(),
                                               **common)
            self.ui.applyButton.text = tr("Cancel")
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = tr("Running...")
            self.timer.start()

    def onProgress(self, percent: float) -> None:
        self.ui.progressBar.value = int(percent)

    def onPoll(self) -> None:
        if self.job is None or not self.job.poll():
            return
        self.timer.stop()
        job, self.job = self.job, None
        self.ui.applyButton.text = tr("Apply")
        for warning in job.warnings:
            slicer.util.warningDisplay(warning, windowTitle=tr("E-MIM"))
        if job.state == SUCCEEDED:
            self.ui.statusLabel.text = tr("Done.")
            self.show(job.result)
        elif job.error:
            self.ui.statusLabel.text = tr("Failed: {error}").format(error=job.error)
            slicer.util.errorDisplay(job.error, windowTitle=tr("E-MIM"))
        else:
            self.ui.statusLabel.text = tr("Cancelled.")
        self.updateApplyState()

    def show(self, result) -> None:
        """Put the result where the user looks: overlay, reconstructions beside inputs, or the table."""
        if self.model.task == "segmentation":
            self.ui.outputSegmentationSelector.setCurrentNode(result)
            given = [node for node in self.inputs().values() if node is not None]  # a dropout model takes a subset
            slicer.util.setSliceViewerLayers(background=given[0] if given else None)
        elif self.model.task == "pretraining":
            modality = self.model.modalities[0].name
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutThreeOverThreeView)
            views = [("Red", self.selector(0).currentNode()), ("Yellow", result["masked"].get(modality)),
                     ("Green", result["reconstruction"].get(modality))]
            for view, node in views:
                composite = slicer.app.layoutManager().sliceWidget(view).mrmlSliceCompositeNode()
                composite.SetBackgroundVolumeID(node.GetID() if node else None)
                if result["mask"] is not None:
                    composite.SetLabelVolumeID(result["mask"].GetID())
        else:
            self.ui.outputTableSelector.setCurrentNode(result)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(result.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()
