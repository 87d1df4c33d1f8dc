"""The module panel (Slicer only): selectors titled from the model, Apply/Cancel, progress and log.

All work is delegated to the Logic; this file only moves values between the GUI, the parameter node and it.
"""

from __future__ import annotations

import qt
import slicer

from .errors import EMIMSegmentationError
from .i18n import tr
from EMIMCommonLib.job import SUCCEEDED
from emim.contract import DEVICE_CHOICES, MASK_CHOICES

from .logic import FAST_OVERLAP
from .metadata import ModelInfo
from EMIMCommonLib.sample_data import sample_case_folder

MAX_INPUTS = 4
POLL_MS = 200


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
        self.ui.deviceComboBox.addItems(list(DEVICE_CHOICES))
        self.ui.maskComboBox.addItems(list(MASK_CHOICES))
        self.ui.loadCaseButton.clicked.connect(self.onLoadCase)
        self.ui.loadSampleButton.clicked.connect(self.onLoadSample)
        self.ui.modelPathLineEdit.currentPathChanged.connect(self.onModelChanged)
        self.ui.fillMissingPathLineEdit.currentPathChanged.connect(self.updateApplyState)
        self.ui.applyButton.clicked.connect(self.onApply)
        for index in range(MAX_INPUTS):
            self.selector(index).currentNodeChanged.connect(self.updateApplyState)

    def setParameterNode(self, node) -> None:
        """The panel now shows `node` (None while the module is left or the scene closes)."""
        self.parameterNode = node
        if node is not None:
            self.offerBundledModels()
            self.onModelChanged(self.ui.modelPathLineEdit.currentPath)

    def onParameterNodeModified(self) -> None:
        self.updateApplyState()

    def shutdown(self) -> None:
        """The application is closing: cancel a running job."""
        self.timer.stop()
        if self.job is not None:
            self.job.cancel()

    def offerBundledModels(self) -> None:
        """Put the shipped models at the top of the model history; choose the starter model when no model is set
        or the saved one is gone."""
        chosen = self.parameterNode.modelPath
        blocked = self.ui.modelPathLineEdit.blockSignals(True)
        try:
            for path in reversed(self.logic.bundledModels()):
                self.ui.modelPathLineEdit.currentPath = str(path)
                self.ui.modelPathLineEdit.addCurrentPathToHistory()
        finally:
            self.ui.modelPathLineEdit.blockSignals(blocked)
        if not chosen or not self.logic.modelFolder(chosen).exists():
            chosen = self.logic.defaultModelPath()
        self.parameterNode.modelPath = chosen
        self.ui.modelPathLineEdit.currentPath = chosen

    def selector(self, index: int):
        return getattr(self.ui, f"inputSelector{index}")

    def inputs(self) -> dict:
        if self.model is None:
            return {}
        return {m.name: self.selector(i).currentNode() for i, m in enumerate(self.model.modalities)}

    def fillMissing(self) -> str | None:
        """The pretraining chosen to synthesise missing inputs, if any (segmentation models only)."""
        if self.model is None or self.model.task != "segmentation":
            return None
        return self.ui.fillMissingPathLineEdit.currentPath or None

    def log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)
        slicer.app.processEvents()

    def onModelChanged(self, path: str) -> None:
        self.model = None
        try:
            self.model = self.logic.readModel(path) if path else None
        except EMIMSegmentationError as error:
            self.ui.modelInfoLabel.text = str(error)
        if self.model is not None:
            if len(self.model.modalities) > MAX_INPUTS:
                self.ui.modelInfoLabel.text = tr("This model needs {n} inputs; this module shows at most {m}.").format(
                    n=len(self.model.modalities), m=MAX_INPUTS)
                self.model = None
            else:
                self.ui.modelInfoLabel.text = self.model.summary()
                self.ui.modelPathLineEdit.addCurrentPathToHistory()
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
        self.ui.fillMissingLabel.visible = self.ui.fillMissingPathLineEdit.visible = segmentation
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
            self.onModelChanged(self.ui.modelPathLineEdit.currentPath)

    def updateApplyState(self, *unused) -> None:
        if self.job is not None or self.parameterNode is None:
            return
        if self.model is None:
            problems = [tr("Choose an exported model folder.")]
        else:
            problems = self.logic.inputProblems(self.inputs(), self.model, self.fillMissing() is not None)
        geometry = [] if problems else self.logic.geometryMismatches(self.inputs(), self.model)
        self.ui.geometryLabel.text = "\n".join(geometry) if geometry else tr("All inputs share one grid.")
        self.ui.applyButton.enabled = not problems
        self.ui.applyButton.toolTip = "\n".join(problems) if problems else tr("Run the model on the inputs.")
        empty = [m.title for m in (self.model.modalities if self.model else ()) if self.inputs().get(m.name) is None]
        if not problems and empty:  # inputs left empty: a model fine-tuned with modality dropout, or filling
            self.ui.geometryLabel.text += "\n" + self.logic.missingSummary(self.inputs(), self.model,
                                                                           self.fillMissing())

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
                self.job = self.logic.segment(self.inputs(), self.model, self.ui.outputSegmentationSelector.currentNode(),
                                              show3D=self.ui.show3DCheckBox.checked,
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
            self.show(job.result)
        elif job.error:
            slicer.util.errorDisplay(job.error, windowTitle=tr("E-MIM"))
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
