"""The module panel (Slicer only): data check, task knobs, Start/Stop/Resume, live charts, export and hand-off.

All work is delegated to the Logic; this file only moves values between the GUI, the parameter node and it, and
polls the running job from a Qt timer so Slicer stays responsive.
"""

from __future__ import annotations

import qt
import slicer

from .data_check import DataReport
from .errors import EMIMTrainingError
from .i18n import tr
from emim.contract import FINETUNE, FINETUNE_CLASSIFIER, PRETRAIN

from .settings import START_NOTHING, settings_from_parameters
from .training_job import STOPPED

POLL_MS = 500
SHUTDOWN_GRACE_S = 30.0  # how long closing Slicer waits for a training's checkpoint before killing it


class WidgetController:
    """Owns `ui` (from EMIMTraining.ui), the data check report, the running job and the followed run."""

    def __init__(self, ui, logic) -> None:
        self.ui, self.logic = ui, logic
        self.parameterNode = None  # set by the module widget's lifecycle (setParameterNode)
        self.report: DataReport | None = None
        self.job = None
        self.follower = None
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.onPoll)
        self.ui.checkDataButton.clicked.connect(self.onCheckData)
        self.ui.startButton.clicked.connect(self.onStart)
        self.ui.stopButton.clicked.connect(self.onStop)
        self.ui.resumeButton.clicked.connect(self.onResume)
        self.ui.exportButton.clicked.connect(self.onExport)
        self.ui.reconstructButton.clicked.connect(self.onReconstruct)
        self.ui.chartSelector.currentNodeChanged.connect(self.onChartChosen)
        self.ui.dataPathLineEdit.currentPathChanged.connect(self.onDataChanged)
        self.ui.runFolderPathLineEdit.currentPathChanged.connect(self.onRunFolderChanged)
        self.ui.taskComboBox.currentTextChanged.connect(self.updateState)

    def setParameterNode(self, node) -> None:
        """The panel now shows `node` (None while the module is left or the scene closes)."""
        self.parameterNode = node

    def onParameterNodeModified(self) -> None:
        self.updateState()

    def sceneClosing(self) -> None:
        """File > Close Scene: a training works on files, not on the scene, so it goes on; Stop still stops it."""

    def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """The application is closing: a running training saves a checkpoint and stops (killed after `grace_s`)."""
        self.timer.stop()
        if self.job is not None:
            self.job.stop(grace_s=grace_s, wait=True)

    def log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)

    # -- data set ------------------------------------------------------------------------------------------------

    def onDataChanged(self, *unused) -> None:
        self.report = None
        self.ui.dataSummaryLabel.text = tr("Check the data set before training.")
        self.updateState()

    def onCheckData(self) -> None:
        with slicer.util.tryWithErrorDisplay(tr("Checking the data set failed."), waitCursor=True):
            self.report = None
            p = self.parameterNode
            modalities = [m.strip() for m in p.modalities.split(",") if m.strip()]
            report = self.logic.checkData(p.dataPath, modalities, logCallback=self.log)
            p.dataTable = self.logic.dataTable(report, p.dataTable)
            self.ui.dataTableView.setMRMLTableNode(p.dataTable)
            problems = report.blocking_problems()
            summary = report.summary_text() + ("\n" + "\n".join(problems) if problems else "")
            if report.ok and p.task == PRETRAIN:
                rows = self.logic.collapseReport(p.dataPath, modalities, p.preset, logCallback=self.log)
                p.collapseTable = self.logic.collapseTable(rows, p.collapseTable)
                summary += "\n" + "\n".join(tr("{pattern} masks: {verdict}").format(**row) for row in rows)
            self.ui.dataSummaryLabel.text = summary
            self.report = report
        self.updateState()

    # -- run control ---------------------------------------------------------------------------------------------

    def onStart(self) -> None:
        from EMIMCommonLib.install import ensure_dependencies

        with slicer.util.tryWithErrorDisplay(tr("The run could not start."), waitCursor=True):
            if not ensure_dependencies():
                return
            self.ui.logTextEdit.clear()
            self._watch(self.logic.start(settings_from_parameters(self.parameterNode), report=self.report,
                                         logCallback=self.log))

    def onResume(self) -> None:
        with slicer.util.tryWithErrorDisplay(tr("The run could not be resumed."), waitCursor=True):
            p = self.parameterNode
            self._watch(self.logic.resume(p.runFolder, device=p.device, gpus=p.gpus, logCallback=self.log))

    def onStop(self) -> None:
        if self.job is not None:
            self.logic.stop(self.job, wait=False)  # the timer sees the end; Slicer stays responsive meanwhile
            self.ui.stopButton.enabled = False

    def _watch(self, job) -> None:
        self.job, self.follower = job, job.metrics
        self.ui.progressBar.value = 0
        self.timer.start()
        self.updateState()

    def onPoll(self) -> None:
        if self.job is None:
            if self.follower is not None:
                self.follower.poll()
            return
        over = self.job.poll()
        if self.job.total:
            self.ui.progressBar.value = int(100 * (self.job.step or 0) / self.job.total)
        self.ui.progressLabel.text = self.job.progress_text()
        self.showWarnings()
        self.showFirstChart()
        if not over:
            return
        job, self.job = self.job, None
        self.timer.stop()  # the run is over: nothing more to follow
        self.ui.progressLabel.text = {"succeeded": tr("Finished."), STOPPED: tr("Stopped; Resume continues it."),
                                      "cancelled": tr("Cancelled.")}.get(job.state, tr("Failed."))
        if job.state == "failed":
            slicer.util.errorDisplay(job.error or tr("The run failed; see the log."), windowTitle=tr("E-MIM"))
        self.updateState()

    def onRunFolderChanged(self, path: str) -> None:
        """Watch an existing run's charts (also one started elsewhere) when the folder holds one."""
        if self.job is not None:
            return
        self.follower = None
        try:
            self.logic.runConfig(path)
        except EMIMTrainingError:
            self.updateState()
            return
        self.follower = self.logic.follow(path)
        self.timer.start()
        self.showWarnings()
        self.showFirstChart()
        self.updateState()

    # -- live view -----------------------------------------------------------------------------------------------

    def showFirstChart(self) -> None:
        if self.follower is not None and self.ui.chartSelector.currentNode() is None:
            charts = self.follower.ordered_charts()
            if charts:
                self.ui.chartSelector.setCurrentNode(charts[0])

    def onChartChosen(self, chart) -> None:
        if chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chart)

    def showWarnings(self) -> None:
        if self.parameterNode is None:  # the module is not shown; the job is still polled
            return
        run = self.parameterNode.runFolder
        warnings = self.logic.runWarnings(run) if run else []
        self.ui.warningsLabel.text = warnings[-1].text() if warnings else tr("No warnings.")

    # -- hand-off ------------------------------------------------------------------------------------------------

    def onExport(self) -> None:
        p = self.parameterNode
        model = None
        with slicer.util.tryWithErrorDisplay(tr("Export failed."), waitCursor=True):
            model = self.logic.exportModel(p.runFolder, p.exportFolder, logCallback=self.log)
            self.logic.handOff(model)
            self.log(tr("Model exported to {folder}; E-MIM Segmentation now uses it.").format(folder=model))
        if model is not None and slicer.util.confirmYesNoDisplay(
                tr("The model is ready. Open it in E-MIM Segmentation now?"), windowTitle=tr("E-MIM")):
            slicer.util.selectModule("EMIMSegmentation")
        self.updateState()

    def onReconstruct(self) -> None:
        p = self.parameterNode
        with slicer.util.tryWithErrorDisplay(tr("Reconstruction failed."), waitCursor=True):
            result = self.logic.reconstructCase(p.exportFolder, p.reconstructionCase, device=p.device,
                                                logCallback=self.log)
            first = next(iter(result["inputs"].values()))
            slicer.util.setSliceViewerLayers(background=first, label=result["mask"], fit=True)
            slicer.util.selectModule("EMIMSegmentation")

    # -- enabling ------------------------------------------------------------------------------------------------

    def updateState(self, *unused) -> None:
        p = self.parameterNode
        if p is None:  # the module is not shown, or the scene is closing
            return
        running = self.job is not None
        pretraining, classifying = p.task == PRETRAIN, p.task == FINETUNE_CLASSIFIER
        for widget in (self.ui.maskLabel, self.ui.maskComboBox, self.ui.patchRatioLabel, self.ui.patchRatioSpinBox,
                       self.ui.positionRatioLabel, self.ui.positionRatioSpinBox, self.ui.pbtLevelsLabel,
                       self.ui.pbtLevelsSpinBox, self.ui.pbtWeightLabel, self.ui.pbtWeightSpinBox):
            widget.visible = pretraining
        self.ui.pretrainedPathLineEdit.visible = p.startFrom != START_NOTHING
        self.ui.labelsCsvLabel.visible = self.ui.labelsCsvPathLineEdit.visible = classifying
        self.ui.valCasesLabel.visible = self.ui.valCasesSpinBox.visible = p.task == FINETUNE
        self.ui.modalityDropoutLabel.visible = self.ui.modalityDropoutSpinBox.visible = p.task == FINETUNE
        self.ui.valFractionLabel.visible = self.ui.valFractionSpinBox.visible = classifying
        problems = settings_from_parameters(p).problems()
        if self.report is None:
            problems.append(tr("Check the data set first."))
        elif not self.report.ok:
            problems.append(tr("The data set has cases that cannot be used; see the table."))
        self.ui.startButton.enabled = not running and not problems
        self.ui.startButton.toolTip = "\n".join(problems) if problems else tr("Start the run in the background.")
        self.ui.stopButton.enabled = running
        has_run = bool(p.runFolder) and self.follower is not None
        self.ui.resumeButton.enabled = not running and has_run
        self.ui.exportButton.enabled = not running and has_run and bool(p.exportFolder)
        self.ui.reconstructButton.enabled = not running and pretraining and bool(p.exportFolder) \
            and bool(p.reconstructionCase)
