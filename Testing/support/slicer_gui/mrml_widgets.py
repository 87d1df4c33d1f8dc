"""Stand-ins for Slicer's MRML-aware Qt widgets over the real slicer-core scene.

- qMRMLWidget: holds a scene; `setMRMLScene` emits `mrmlSceneChanged(scene)` (the .ui files pass it on).
- qMRMLNodeComboBox: lists the scene's nodes of `nodeTypes` (hidden ones left out unless `showHidden`), follows
  additions, removals, renames and scene close; "None" first when `noneEnabled`, "Create new ..." when
  `addEnabled` (it adds a node named from `baseName`); `currentNode()`, `setCurrentNode()`, `currentNodeID`,
  `currentNodeChanged(node)`; without `noneEnabled` the first node is chosen, as Slicer's does.
- qMRMLTableView: shows a vtkMRMLTableNode's cells, refreshed when the node changes.
Not reproduced: node attribute filters, the Rename/Delete/Edit items, the view's column editing and sorting.
"""

from __future__ import annotations

import slicer
import vtk
from PySide6.QtCore import Property, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QTableView, QWidget

SCENE_EVENTS = ("NodeAddedEvent", "NodeRemovedEvent", "EndCloseEvent", "EndImportEvent")


class qMRMLWidget(QWidget):
    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = None

    def mrmlScene(self):
        return self._scene

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)


class qMRMLNodeComboBox(QWidget):
    currentNodeChanged = Signal(object)
    currentNodeIDChanged = Signal(str)
    nodeAdded = Signal(object)
    NONE, CREATE = "", "create"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene, self._tags, self._nodeTags = None, [], []
        self._nodeTypes: list[str] = []
        self._current = ""
        self._noneEnabled, self._addEnabled, self._showHidden = False, True, False
        self._removeEnabled, self._renameEnabled, self._baseName = True, False, ""
        self._combo = QComboBox(self)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._combo)
        self._combo.activated.connect(self._onActivated)

    # -- properties set from .ui files and by Slicer's connectors --------------------------------------------------

    def _flag(name: str):  # noqa: N805  (a property factory used in the class body)
        def get(self):
            return getattr(self, name)

        def set_(self, value):
            setattr(self, name, bool(value))
            self._refresh()
        return Property(bool, get, set_)

    noneEnabled, addEnabled, showHidden = _flag("_noneEnabled"), _flag("_addEnabled"), _flag("_showHidden")
    removeEnabled, renameEnabled = _flag("_removeEnabled"), _flag("_renameEnabled")
    del _flag

    def _getNodeTypes(self) -> list:
        return list(self._nodeTypes)

    def _setNodeTypes(self, types) -> None:
        self._nodeTypes = [str(t) for t in types]
        self._refresh()

    def _getBaseName(self) -> str:
        return self._baseName

    def _setBaseName(self, name: str) -> None:
        self._baseName = name

    nodeTypes = Property("QStringList", _getNodeTypes, _setNodeTypes)
    baseName = Property(str, _getBaseName, _setBaseName)

    def _getCurrentNodeID(self) -> str:
        return self._current

    currentNodeID = Property(str, _getCurrentNodeID, lambda self, nodeID: self.setCurrentNodeID(nodeID))

    # -- scene -------------------------------------------------------------------------------------------------------

    def mrmlScene(self):
        return self._scene

    def setMRMLScene(self, scene) -> None:
        for tag in self._tags:
            self._scene.RemoveObserver(tag)
        self._scene, self._tags = scene, []
        if scene is not None:
            self._tags = [scene.AddObserver(getattr(scene, event), lambda *a: self._refresh())
                          for event in SCENE_EVENTS]
        self._refresh()

    def nodes(self) -> list:
        """The scene's nodes this box lists, in scene order."""
        if self._scene is None:
            return []
        found = []
        for index in range(self._scene.GetNumberOfNodes()):
            node = self._scene.GetNthNode(index)
            if any(node.IsA(t) for t in self._nodeTypes) and (self._showHidden or not node.GetHideFromEditors()):
                found.append(node)
        return found

    def _refresh(self) -> None:
        for node, tag in self._nodeTags:
            node.RemoveObserver(tag)
        nodes = self.nodes()
        self._nodeTags = [(node, node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._onNodeModified))
                          for node in nodes]
        entries = ([(self.NONE, "None")] if self._noneEnabled else []) + [(n.GetID(), n.GetName()) for n in nodes]
        if self._addEnabled and self._nodeTypes:
            entries.append((self.CREATE, f"Create new {self._nodeTypes[0].replace('vtkMRML', '').replace('Node', '')}"))
        self._entries = entries
        blocked = self._combo.blockSignals(True)
        self._combo.clear()
        self._combo.addItems([label for _, label in entries])
        self._combo.blockSignals(blocked)
        ids = [nodeID for nodeID, _ in entries if nodeID not in (self.NONE, self.CREATE)]
        current = self._current if self._current in ids else ""
        if not current and not self._noneEnabled and ids:
            current = ids[0]
        self._select(current)

    def _onNodeModified(self, node, event) -> None:
        for index, (nodeID, label) in enumerate(self._entries):
            if nodeID == node.GetID() and label != node.GetName():
                self._entries[index] = (nodeID, node.GetName())
                self._combo.setItemText(index, node.GetName())

    def _onActivated(self, index: int) -> None:
        nodeID = self._entries[index][0]
        if nodeID == self.CREATE:
            self.addNode()
        else:
            self._select(nodeID)

    def addNode(self):
        """What "Create new ..." does: a node of the first type, named from baseName, made current."""
        node = self._scene.AddNewNodeByClass(self._nodeTypes[0], self._baseName or "")
        self.nodeAdded.emit(node)
        self.setCurrentNode(node)
        return node

    def _select(self, nodeID: str) -> None:
        ids = [entryID for entryID, _ in self._entries]
        index = ids.index(nodeID) if nodeID in ids else (ids.index(self.NONE) if self.NONE in ids else -1)
        blocked = self._combo.blockSignals(True)
        self._combo.setCurrentIndex(index)
        self._combo.blockSignals(blocked)
        if nodeID != self._current:
            self._current = nodeID
            self.currentNodeIDChanged.emit(nodeID)
            self.currentNodeChanged.emit(self.currentNode())

    def currentNode(self):
        return self._scene.GetNodeByID(self._current) if self._scene is not None and self._current else None

    def setCurrentNode(self, node) -> None:
        self.setCurrentNodeID(node.GetID() if node is not None else "")

    def setCurrentNodeID(self, nodeID: str) -> None:
        if nodeID and nodeID not in [entryID for entryID, _ in self._entries]:
            self._refresh()
        self._select(nodeID or "")


class qMRMLTableView(QTableView):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._node, self._tag, self._scene = None, None, None
        self.setModel(QStandardItemModel(self))

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        if scene is None:
            self.setMRMLTableNode(None)

    def mrmlTableNode(self):
        return self._node

    def setMRMLTableNode(self, node) -> None:
        if self._node is not None and self._tag is not None:
            self._node.RemoveObserver(self._tag)
        self._node, self._tag = node, None
        if node is not None:
            self._tag = node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda *a: self._fill())
        self._fill()

    def _fill(self) -> None:
        model: QStandardItemModel = self.model()
        model.clear()
        table = self._node.GetTable() if self._node is not None else None
        if table is None:
            return
        model.setHorizontalHeaderLabels([table.GetColumnName(c) for c in range(table.GetNumberOfColumns())])
        for row in range(table.GetNumberOfRows()):
            model.appendRow([QStandardItem(table.GetValue(row, c).ToString())
                             for c in range(table.GetNumberOfColumns())])
        self.resizeColumnsToContents()


STANDINS = {"qMRMLWidget": qMRMLWidget, "qMRMLNodeComboBox": qMRMLNodeComboBox, "qMRMLTableView": qMRMLTableView}


def publish() -> list[str]:
    """Put the widget classes on the `slicer` module (Slicer's connectors compare against them); the names set."""
    placeholders = {name: type(name, (QWidget,), {}) for name in ("qMRMLSliderWidget", "qMRMLSpinBox",
                                                                 "qMRMLRangeWidget")}
    published = {**STANDINS, **placeholders, "qSlicerWidget": qMRMLWidget}
    for name, cls in published.items():
        setattr(slicer, name, cls)
    return list(published)
