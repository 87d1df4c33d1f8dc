"""Slicer's scripted-module lifecycle for a module panel, shared by both modules' widgets.

The parameter node is (re)connected to the panel when the module is entered and after File > Close Scene (which
removes it), and released when the module is left or the scene starts closing; the application's exit cancels
what runs. A running job is not touched by leaving the module: its controller keeps polling it.

Mixed into the module's `ScriptedLoadableModuleWidget` together with `VTKObservationMixin`; it expects
`self.logic` (with `getParameterNode()`), `self.ui` and `self.controller`, whose `setParameterNode(node)`,
`onParameterNodeModified()`, `sceneClosing()` and `shutdown()` do the panel's own part.
"""

from __future__ import annotations

import vtk


class PanelLifecycle:
    _parameterNode = None
    _parameterNodeGuiTag = None

    def observeSceneClose(self, scene) -> None:
        """Call once in `setup()`."""
        self.addObserver(scene, scene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(scene, scene.EndCloseEvent, self.onSceneEndClose)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.controller.sceneClosing()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, node) -> None:
        """Release the current node's GUI connection and observer, then connect `node` (None: none)."""
        if self._parameterNode is not None:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self._onParameterNodeModified)
        self._parameterNode, self._parameterNodeGuiTag = node, None
        self.controller.setParameterNode(node)
        if node is not None:
            self._parameterNodeGuiTag = node.connectGui(self.ui)
            self.addObserver(node.parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self.controller.onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        self.controller.onParameterNodeModified()

    def cleanup(self) -> None:
        """The application is closing: stop what runs, release everything."""
        self.controller.shutdown()
        self.setParameterNode(None)
        self.removeObservers()
