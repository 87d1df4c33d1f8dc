"""EMIMTraining: launch, watch and steer E-MIM pretraining and fine-tuning from Slicer, then hand the model on.

Thin wiring of Slicer's four module classes; the behaviour lives in EMIMTrainingLib (Qt-free Logic, tested on
slicer-core) and EMIMTrainingLib/widget.py (the panel). Shared pieces (engine process runner, job, installer)
come from EMIMSegmentationLib, installed beside this module. The engine runs as a child process, so importing
this module never imports torch or the engine.
"""

from __future__ import annotations

import os
import tempfile
import time

import slicer
import vtk
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from EMIMTrainingLib.logic import TrainingLogic


def _(text: str) -> str:
    return translate("EMIMTraining", text)


class EMIMTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("E-MIM Training")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["EMIMSegmentation"]
        self.parent.contributors = ["E-MIM contributors"]
        self.parent.helpText = _("Pretrain an E-MIM model on your own multi-modal MRI (hybrid masks and pyramid "
                                 "Barlow Twins), fine-tune it for segmentation or classification, watch the loss "
                                 "and collapse charts live, stop and resume, and open the result in E-MIM "
                                 "Segmentation.")
        self.parent.acknowledgementText = _("E-MIM: enhanced masked image modelling (hybrid masks and pyramid Barlow "
                                            "Twins) for multi-modal MRI.")


@parameterNodeWrapper
class EMIMTrainingParameterNode:
    """Saved with the scene: data set, task and its knobs, run and export folders."""

    dataPath: str = ""
    modalities: str = ""
    valCases: int = 1
    valFraction: float = 0.2
    task: str = "pretrain"
    preset: str = "tiny"
    pretrained: str = ""
    labelsCsv: str = ""
    maskPattern: str = "hybrid"
    patchRatio: float = 0.5
    positionRatio: float = 0.4
    pbtLevels: int = 4
    pbtWeight: float = 0.1
    cropSize: str = ""
    batchSize: int = 0  # 0 = the preset's default
    learningRate: float = 0.0
    steps: int = 1000
    evalEvery: int = 50
    checkpointEvery: int = 50
    device: str = "auto"
    gpus: int = 1
    runFolder: str = ""
    exportFolder: str = ""
    reconstructionCase: str = ""
    dataTable: slicer.vtkMRMLTableNode
    collapseTable: slicer.vtkMRMLTableNode


class EMIMTrainingWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.controller = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from EMIMTrainingLib.widget import WidgetController

        panel = slicer.util.loadUI(self.resourcePath("UI/EMIMTraining.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        self.logic = EMIMTrainingLogic()
        self.parameterNode = self.logic.getParameterNode()
        self.controller = WidgetController(self.ui, self.logic, self.parameterNode)
        self.parameterNode.connectGui(self.ui)
        self.addObserver(self.parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                         lambda *a: self.controller.updateState())
        self.controller.updateState()

    def cleanup(self) -> None:
        """Closing Slicer stops a running training the graceful way, so it can be resumed later."""
        self.removeObservers()
        if self.controller is not None and self.controller.job is not None:
            self.controller.job.stop(wait=True)


class EMIMTrainingLogic(ScriptedLoadableModuleLogic, TrainingLogic):
    __doc__ = TrainingLogic.__doc__

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return EMIMTrainingParameterNode(super().getParameterNode())


class EMIMTrainingTest(ScriptedLoadableModuleTest):
    """In Slicer: a short `tiny` pretraining is started, stopped and resumed.

    Run: Slicer --testing --python-code "import slicer.testing; slicer.testing.runUnitTest(['EMIMTraining'])".
    The data set is $EMIM_TEST_DATA (a folder of BraTS case folders) or else the shipped E-MIM sample case.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_start_stop_resume()

    def test_start_stop_resume(self):
        from EMIMSegmentationLib.install import ensure_dependencies
        from EMIMSegmentationLib.sample_data import sample_case_folder
        from EMIMTrainingLib.settings import TrainingSettings

        self.assertTrue(ensure_dependencies(confirm=False), "the engine's Python packages could not be installed")
        data = os.environ.get("EMIM_TEST_DATA") or str(sample_case_folder().parent)
        run = os.path.join(tempfile.mkdtemp(prefix="emim-training-test-"), "run")
        logic = EMIMTrainingLogic()
        # 200 steps (~30 ms each): long enough to be stopped part-way even on a fast, quiet machine
        settings = TrainingSettings(task="pretrain", data=data, run=run, preset="tiny", crop="32", batch_size=1,
                                    steps=200, device="cpu", log_every=1, eval_every=50, checkpoint_every=50)
        job = logic.start(settings)
        while job.metrics.tables.get("train") is None or job.metrics.tables["train"].GetNumberOfRows() < 2:
            self.assertFalse(job.poll() and job.state == "failed", job.error)
            slicer.app.processEvents()
            time.sleep(0.2)
        logic.stop(job)
        self.assertEqual(job.state, "stopped")
        saved = job.checkpoint_step
        self.assertLess(saved, 200, "the run ended before the stop; nothing is left to resume")
        job = logic.resume(run, device="cpu", waitForCompletion=True)
        self.assertEqual(job.resumed_step, saved)
        self.assertEqual(job.metrics.last_step, 200)
        self.delayDisplay("E-MIM training start/stop/resume passed")
