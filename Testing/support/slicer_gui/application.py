"""`slicer.app` and the parts of the Slicer application the panels meet, without the application.

Reproduced: testing mode (message boxes are logged, confirmations answered yes, as `slicer.app.testingEnabled()`
makes slicer.util do), `processEvents`, the `startupCompleted()` signal, the module manager (modules by name, their
panels made on first use as Slicer does, `moduleAboutToBeUnloaded` calling `cleanup()`), module selection (the
previous panel's `exit()`, the new one's `enter()`), the main window's name that slicer.util looks for, the three
slice views' real MRML slice and composite nodes (so setSliceViewerLayers and the panels' view settings land in
the scene), the layout id, and the Plots module's real logic.
Not reproduced: slice and 3D rendering (tests draw slices from the composite nodes themselves), the layout's
widgets, the data dialogs, the Python console, translation (text stays English).
"""

from __future__ import annotations

import types
from pathlib import Path

import slicer
import vtk
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMainWindow, QVBoxLayout

from .mrml_widgets import qMRMLWidget

SLICE_VIEWS = ("Red", "Yellow", "Green")


class qSlicerScriptedLoadableModuleWidget(qMRMLWidget):
    """The frame Slicer gives a scripted module's panel; `self()` is the module's Python widget."""

    def __init__(self, module: "ScriptedModule") -> None:
        super().__init__()
        self.setLayout(QVBoxLayout())
        self.module, self.isEntered, self.python = module, False, None

    def self(self):
        return self.python


class ScriptedModule:
    """What Slicer's module manager holds for a scripted module (qSlicerScriptedLoadableModule)."""

    def __init__(self, name: str, path: Path, python_module) -> None:
        self.name, self.path, self.python_module = name, str(path), python_module
        self.parent = types.SimpleNamespace(path=str(path), icon=None)
        self.instance = getattr(python_module, name)(self.parent)
        self._panel: qSlicerScriptedLoadableModuleWidget | None = None

    def widgetRepresentation(self) -> qSlicerScriptedLoadableModuleWidget:
        """The panel, made and set up on first use as Slicer does when a module is first shown."""
        if self._panel is None:
            panel = qSlicerScriptedLoadableModuleWidget(self)
            panel.setMRMLScene(slicer.mrmlScene)
            panel.python = getattr(self.python_module, f"{self.name}Widget")(panel)
            self._panel = panel
            panel.python.setup()
        return self._panel

    def logic(self):
        return None  # scripted modules: slicer.util.getModuleLogic reads the widget's `logic`


class ModuleManager:
    def __init__(self) -> None:
        self.modules: dict[str, ScriptedModule] = {}
        self.unloadSlots: list = []

    def module(self, name: str):
        return self.modules.get(name)

    def connect(self, signal: str, slot) -> None:
        self.unloadSlots.append(slot)

    def disconnect(self, signal: str, slot) -> None:
        if slot in self.unloadSlots:
            self.unloadSlots.remove(slot)

    def unload(self, name: str) -> None:
        """Application exit: every panel hears moduleAboutToBeUnloaded(name)."""
        for slot in list(self.unloadSlots):
            slot(name)


class SliceWidget:
    def __init__(self, name: str, scene) -> None:
        self.name = name
        self.sliceNode = scene.GetSingletonNode(name, "vtkMRMLSliceNode") or _add_singleton(
            scene, slicer.vtkMRMLSliceNode(), name)
        self.compositeNode = scene.GetSingletonNode(name, "vtkMRMLSliceCompositeNode") or _add_singleton(
            scene, slicer.vtkMRMLSliceCompositeNode(), name)

    def mrmlSliceNode(self):
        return self.sliceNode

    def mrmlSliceCompositeNode(self):
        return self.compositeNode


def _add_singleton(scene, node, name: str):
    node.SetSingletonTag(name)
    node.SetLayoutName(name)
    if isinstance(node, slicer.vtkMRMLSliceNode):
        node.SetOrientation({"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}[name])
    return scene.AddNode(node)


class LayoutManager:
    def __init__(self) -> None:
        self.layout = 0

    def setLayout(self, layout: int) -> None:
        self.layout = layout

    def sliceViewNames(self) -> list[str]:
        return list(SLICE_VIEWS)

    def sliceWidget(self, name: str) -> SliceWidget:
        return SliceWidget(name, slicer.mrmlScene)

    def mrmlSliceLogics(self):
        return vtk.vtkCollection()


class MainWindow(QMainWindow):
    """Only what slicer.util needs of Slicer's main window: its object name and the module selector."""

    def __init__(self, app: "SlicerApplication") -> None:
        super().__init__()
        self.setObjectName("qSlicerMainWindow")
        self.app = app

    def moduleSelector(self):
        return self

    def selectModule(self, name: str) -> None:
        self.app.selectModule(name)


class SlicerApplication:
    """`slicer.app` for the panels."""

    applicationName = "3D Slicer"

    def __init__(self, qapp: QApplication, headless) -> None:
        self.qapp, self.headless = qapp, headless
        self.signalSlots: dict[str, list] = {}
        self.manager = ModuleManager()
        self.layout = LayoutManager()
        self.mainWindow = MainWindow(self)
        self.current: str | None = None

    def testingEnabled(self) -> bool:
        return True

    def translate(self, context: str, text: str) -> str:
        return text

    def processEvents(self, *args) -> None:
        self.qapp.processEvents()

    def connect(self, signal: str, slot) -> None:
        self.signalSlots.setdefault(signal, []).append(slot)

    def emit(self, signal: str) -> None:
        for slot in self.signalSlots.get(signal, []):
            slot()

    def moduleManager(self) -> ModuleManager:
        return self.manager

    def layoutManager(self) -> LayoutManager:
        return self.layout

    def applicationLogic(self):
        return self.headless.app

    def topLevelWidgets(self) -> list:
        return [self.mainWindow]

    def setOverrideCursor(self, cursor) -> None:
        self.qapp.setOverrideCursor(cursor)

    def restoreOverrideCursor(self) -> None:
        self.qapp.restoreOverrideCursor()

    def userSettings(self) -> QSettings:
        return QSettings()

    settings = userSettings

    def selectModule(self, name: str) -> None:
        """The module selector: leave the shown module (exit), show and enter `name`."""
        if self.current == name:
            return
        if self.current is not None:
            leaving = self.manager.module(self.current).widgetRepresentation()
            leaving.python.exit()
            leaving.isEntered = False
        panel = self.manager.module(name).widgetRepresentation()
        self.current = name
        panel.isEntered = True
        panel.python.enter()
