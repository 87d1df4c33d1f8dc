"""EMIMSegmentation: segment brain tumours from multi-modal MRI with an E-MIM model, and look inside the model.

Thin wiring of Slicer's four module classes; the behaviour lives in EMIMSegmentationLib (Qt-free Logic, tested
on slicer-core) and EMIMSegmentationLib/widget.py (the panel). The engine runs as a child process, so importing
this module never imports torch or the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import slicer
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from EMIMSegmentationLib.logic import SegmentationLogic  # first: its package finds EMIMCommonLib in a checkout

from EMIMCommonLib.lifecycle import PanelLifecycle  # noqa: I100
from EMIMCommonLib.path_connector import OptionalPath
from emim.contract import DEVICE_CHOICES, HYBRID, MASK_CHOICES


def _(text: str) -> str:
    return translate("EMIMSegmentation", text)


class EMIMSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("E-MIM Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.contributors = ["E-MIM contributors"]
        self.parent.helpText = _("Segment a brain tumour from T1, T1 contrast-enhanced, T2 and FLAIR volumes with an "
                                 "exported E-MIM model; show what a pretraining model reconstructs from masked inputs; "
                                 "show class probabilities of classification models.")
        self.parent.acknowledgementText = _("E-MIM: enhanced masked image modelling (hybrid masks and pyramid Barlow "
                                            "Twins) for multi-modal MRI.")
        slicer.app.connect("startupCompleted()", self._registerSampleData)

    def _registerSampleData(self):
        from EMIMCommonLib.sample_data import register_sample_data

        register_sample_data(Path(self.parent.path).parent / "Resources" / "Icons" / "EMIMSegmentation.png")


@parameterNodeWrapper
class EMIMSegmentationParameterNode:
    """Saved with the scene: the model, device, inputs in model order, output nodes, look-inside settings, and the
    pretraining that fills missing inputs. `model` and `fillMissing` are a shipped model's name or a model folder
    (the panel's model lists set them); the others are bound to their widgets by Slicer's connectors."""

    model: str = ""
    fillMissing: str = ""  # a pretraining that synthesises inputs left empty; "" = none
    device: Annotated[str, Choice(DEVICE_CHOICES)] = DEVICE_CHOICES[0]
    resample: bool = False
    show3D: bool = False
    fast: bool = False
    maskPattern: Annotated[str, Choice(MASK_CHOICES)] = HYBRID
    seed: Annotated[int, WithinRange(0, 99999)] = 0
    input0: slicer.vtkMRMLScalarVolumeNode
    input1: slicer.vtkMRMLScalarVolumeNode
    input2: slicer.vtkMRMLScalarVolumeNode
    input3: slicer.vtkMRMLScalarVolumeNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    outputTable: slicer.vtkMRMLTableNode
    trainingCases: OptionalPath = None  # where "Add to training cases" writes corrected cases


class EMIMSegmentationWidget(PanelLifecycle, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel; enter/exit, scene close and cleanup follow Slicer's lifecycle (EMIMCommonLib.lifecycle)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.controller = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from EMIMSegmentationLib.widget import WidgetController

        panel = slicer.util.loadUI(self.resourcePath("UI/EMIMSegmentation.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        self.logic = EMIMSegmentationLogic()
        self.controller = WidgetController(self.ui, self.logic)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent,
                         lambda *a: self.controller.updateApplyState())
        self.observeSceneClose(slicer.mrmlScene)
        self.initializeParameterNode()


class EMIMSegmentationLogic(ScriptedLoadableModuleLogic, SegmentationLogic):
    __doc__ = SegmentationLogic.__doc__

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return EMIMSegmentationParameterNode(super().getParameterNode())


class EMIMSegmentationTest(ScriptedLoadableModuleTest):
    """End to end in Slicer: the Sample Data case (checksums verified by Sample Data) -> a model -> segmentation.

    Run: Slicer --testing --python-code "import slicer.testing; slicer.testing.runUnitTest(['EMIMSegmentation'])"
    (or `ctest -R py_EMIMSegmentation` in the extension build tree). The model is $EMIM_TEST_MODEL when set,
    otherwise the shipped starter model; the checks themselves are EMIMSegmentationLib.self_test.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_sample_case()

    def test_segment_sample_case(self):
        import SampleData

        from EMIMCommonLib.install import ensure_dependencies
        from EMIMCommonLib.sample_data import MODALITIES, SAMPLE_NAME
        from EMIMSegmentationLib.self_test import segmentation_problems, self_test_model

        self.assertTrue(ensure_dependencies(confirm=False), "the engine's Python packages could not be installed")
        nodes = SampleData.SampleDataLogic().downloadSamples(SAMPLE_NAME)
        self.assertEqual(len(nodes), len(MODALITIES), "Sample Data did not load all four sample volumes")
        self.delayDisplay("Sample case loaded")
        self.assertEqual(segmentation_problems(EMIMSegmentationLogic(), nodes, self_test_model()), [])
        self.delayDisplay("E-MIM segmentation of the sample case passed")
