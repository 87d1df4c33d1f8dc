"""EMIMSegmentation: segment brain tumours from multi-modal MRI with an E-MIM model, and look inside the model.

Thin wiring of Slicer's four module classes; the behaviour lives in EMIMSegmentationLib (Qt-free Logic, tested
on slicer-core) and EMIMSegmentationLib/widget.py (the panel). The engine runs as a child process, so importing
this module never imports torch or the engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import slicer
import vtk
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from EMIMSegmentationLib.logic import SegmentationLogic


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
        from EMIMSegmentationLib.sample_data import register_sample_data

        register_sample_data(Path(self.parent.path).parent / "Resources" / "Icons")


@parameterNodeWrapper
class EMIMSegmentationParameterNode:
    """Saved with the scene: model folder, device, inputs in model order, output nodes, look-inside settings."""

    modelPath: str = ""
    device: str = "auto"
    resample: bool = False
    show3D: bool = False
    maskPattern: str = "hybrid"
    seed: int = 0
    input0: slicer.vtkMRMLScalarVolumeNode
    input1: slicer.vtkMRMLScalarVolumeNode
    input2: slicer.vtkMRMLScalarVolumeNode
    input3: slicer.vtkMRMLScalarVolumeNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    outputTable: slicer.vtkMRMLTableNode


class EMIMSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
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
        self.parameterNode = self.logic.getParameterNode()
        self.parameterNode.connectGui(self.ui)
        self.controller = WidgetController(self.ui, self.logic, self.parameterNode)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, lambda *a: self.controller.updateApplyState())

    def cleanup(self) -> None:
        self.removeObservers()
        if self.controller is not None and self.controller.job is not None:
            self.controller.job.cancel()


class EMIMSegmentationLogic(ScriptedLoadableModuleLogic, SegmentationLogic):
    __doc__ = SegmentationLogic.__doc__

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return EMIMSegmentationParameterNode(super().getParameterNode())


class EMIMSegmentationTest(ScriptedLoadableModuleTest):
    """End-to-end in Slicer: sample case -> model in $EMIM_TEST_MODEL -> segmentation with the model's labels.

    Run: Slicer --testing --python-code "import slicer.testing; slicer.testing.runUnitTest(['EMIMSegmentation'])"
    (or `ctest -R py_EMIMSegmentation` in the extension build tree) with EMIM_TEST_MODEL set to an exported
    segmentation model folder.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_sample_case()

    def test_segment_sample_case(self):
        import SampleData

        from EMIMSegmentationLib.sample_data import SAMPLE_NAME

        model = os.environ.get("EMIM_TEST_MODEL")
        if not model:
            self.delayDisplay("EMIM_TEST_MODEL is not set: skipping the end-to-end test")
            return
        nodes = SampleData.SampleDataLogic().downloadSamples(SAMPLE_NAME)
        logic = EMIMSegmentationLogic()
        inputs = logic.autoAssignInputs(model, nodes)
        self.assertEqual(logic.inputProblems(inputs, model), [])
        before = {k: slicer.util.arrayFromVolume(n).copy() for k, n in inputs.items()}
        segmentation = logic.segment(inputs, model, device="cpu", waitForCompletion=True)
        info = logic.readModel(model)
        names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(names, [label.name for label in info.labels])
        reference = inputs[info.modalities[0].name]
        expected = slicer.vtkOrientedImageData()
        expected.ShallowCopy(reference.GetImageData())
        matrix = vtk.vtkMatrix4x4()
        reference.GetIJKToRASMatrix(matrix)
        expected.SetImageToWorldMatrix(matrix)
        self.assertEqual(segmentation.GetSegmentation().GetConversionParameter("Reference image geometry"),
                         slicer.vtkSegmentationConverter.SerializeImageGeometry(expected))
        for key, node in inputs.items():
            self.assertTrue((slicer.util.arrayFromVolume(node) == before[key]).all())
        self.delayDisplay("E-MIM segmentation of the sample case passed")
