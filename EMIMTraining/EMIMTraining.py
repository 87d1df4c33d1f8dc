"""EMIMTraining: launch, watch and steer E-MIM pretraining and fine-tuning from Slicer, then hand the model on.

Thin wiring of Slicer's four module classes; the behaviour lives in EMIMTrainingLib (Qt-free Logic, tested on
slicer-core) and EMIMTrainingLib/widget.py (the panel). Shared pieces (engine process runner, job, installer)
come from EMIMCommonLib, installed beside this module. The engine runs as a child process, so importing
this module never imports torch or the engine.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Annotated

import slicer
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, Minimum, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from EMIMTrainingLib.logic import TrainingLogic  # first: its package finds EMIMCommonLib in a checkout
from EMIMTrainingLib.settings import AUTO_VAL_CASES, DEFAULTS, RECIPE, START_FROM

from EMIMCommonLib.lifecycle import PanelLifecycle  # noqa: I100
from EMIMCommonLib.path_connector import OptionalPath
from emim.contract import DEVICE_CHOICES, MASK_CHOICES, PRESET_NAMES, TRAINING_COMMANDS

Ratio = WithinRange(0.0, 1.0)


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

    # the knobs: their defaults are the settings' (DEFAULTS), their meaning `settings_from_parameters`; the ranges
    # are those the spin boxes show (Slicer's connectors set them); paths are None until chosen
    dataPath: OptionalPath = None
    modalities: str = ",".join(DEFAULTS.modalities)
    valCases: Annotated[int, WithinRange(AUTO_VAL_CASES, 1000)] = \
        AUTO_VAL_CASES if DEFAULTS.val_cases is None else DEFAULTS.val_cases
    valFraction: Annotated[float, WithinRange(0.0, 0.9)] = DEFAULTS.val_fraction
    modalityDropout: Annotated[float, Ratio] = DEFAULTS.modality_dropout
    task: Annotated[str, Choice(TRAINING_COMMANDS)] = DEFAULTS.task
    preset: Annotated[str, Choice(PRESET_NAMES)] = DEFAULTS.preset
    startFrom: Annotated[str, Choice(START_FROM)] = DEFAULTS.start_from
    pretrained: OptionalPath = None  # what Start from names; None = the shipped one
    labelsCsv: OptionalPath = None
    maskPattern: Annotated[str, Choice(MASK_CHOICES)] = DEFAULTS.mask
    patchRatio: Annotated[float, WithinRange(0.05, 0.95)] = DEFAULTS.patch_ratio
    positionRatio: Annotated[float, WithinRange(0.05, 0.95)] = DEFAULTS.position_ratio
    pbtLevels: Annotated[int, WithinRange(0, 4)] = DEFAULTS.pbt_levels
    pbtWeight: Annotated[float, WithinRange(0.0, 10.0)] = DEFAULTS.pbt_weight
    cropSize: str = DEFAULTS.crop
    batchSize: Annotated[int, WithinRange(0, 256)] = DEFAULTS.batch_size or 0  # 0 = the preset's default
    learningRate: Annotated[float, Ratio] = DEFAULTS.learning_rate or 0.0  # 0 = the preset's default
    steps: Annotated[int, WithinRange(RECIPE, 10_000_000)] = DEFAULTS.steps or RECIPE
    evalEvery: Annotated[int, WithinRange(RECIPE, 1_000_000)] = DEFAULTS.eval_every or RECIPE
    checkpointEvery: Annotated[int, WithinRange(RECIPE, 1_000_000)] = DEFAULTS.checkpoint_every or RECIPE
    device: Annotated[str, Choice(DEVICE_CHOICES)] = DEFAULTS.device
    gpus: Annotated[int, WithinRange(1, 64)] = DEFAULTS.gpus
    runFolder: OptionalPath = None
    exportFolder: OptionalPath = None
    reconstructionCase: OptionalPath = None
    dataTable: slicer.vtkMRMLTableNode
    collapseTable: slicer.vtkMRMLTableNode


class EMIMTrainingWidget(PanelLifecycle, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel; enter/exit, scene close and cleanup follow Slicer's lifecycle (EMIMCommonLib.lifecycle). A
    running training goes on when the user leaves the module; closing Slicer stops it the graceful way (with a
    checkpoint), so it can be resumed."""

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
        self.controller = WidgetController(self.ui, self.logic)
        self.observeSceneClose(slicer.mrmlScene)
        self.initializeParameterNode()


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
        from EMIMCommonLib.install import ensure_dependencies
        from EMIMCommonLib.sample_data import sample_case_folder
        from EMIMTrainingLib.settings import TrainingSettings

        self.assertTrue(ensure_dependencies(confirm=False), "the engine's Python packages could not be installed")
        data = os.environ.get("EMIM_TEST_DATA") or str(sample_case_folder().parent)
        run = os.path.join(tempfile.mkdtemp(prefix="emim-training-test-"), "run")
        logic = EMIMTrainingLogic()
        # 100 CPU steps (~30 ms each): the stop comes a few steps in, long before the end even on a fast machine
        settings = TrainingSettings(task="pretrain", data=data, run=run, preset="tiny", crop="32", batch_size=1,
                                    steps=100, device="cpu", log_every=1, eval_every=50, checkpoint_every=50)
        job = logic.start(settings)
        while job.metrics.tables.get("train") is None or job.metrics.tables["train"].GetNumberOfRows() < 2:
            self.assertFalse(job.poll() and job.state == "failed", job.error)
            slicer.app.processEvents()
            time.sleep(0.2)
        logic.stop(job)
        self.assertEqual(job.state, "stopped")
        saved = job.checkpoint_step
        self.assertLess(saved, settings.steps, "the run ended before the stop; nothing is left to resume")
        job = logic.resume(run, device="cpu", waitForCompletion=True)
        self.assertEqual(job.resumed_step, saved)
        self.assertEqual(job.metrics.last_step, settings.steps)
        self.delayDisplay("E-MIM training start/stop/resume passed")
