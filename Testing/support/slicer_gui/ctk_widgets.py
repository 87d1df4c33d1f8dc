"""Stand-ins for the CTK widgets the panels' .ui files use, with the behaviour Slicer's code relies on.

- ctkCollapsibleButton: a titled container (`text`, `collapsed` hides its contents).
- ctkPathLineEdit: an editable path with a history; `currentPath` (property), `currentPathChanged(str)`,
  `addCurrentPathToHistory()` and the history kept in QSettings under `settingKey`, as CTK does.
Any other ctk class name resolves to an empty QWidget subclass of that name, so that Slicer's type checks
(`type(widget) in (ctk.ctkSliderWidget, ...)`) run; those widgets are not reproduced.
"""

from __future__ import annotations

import types

from PySide6.QtCore import Property, QSettings, Signal
from PySide6.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QToolButton, QWidget


class ctkCollapsibleButton(QGroupBox):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._collapsed = False

    def _text(self) -> str:
        return self.title

    def _setText(self, text: str) -> None:
        self.setTitle(text)

    def _isCollapsed(self) -> bool:
        return self._collapsed

    def _setCollapsed(self, collapsed: bool) -> None:
        self._collapsed = bool(collapsed)
        for child in self.findChildren(QWidget):
            if child.parent() is self:
                child.setVisible(not collapsed)

    text = Property(str, _text, _setText)
    collapsed = Property(bool, _isCollapsed, _setCollapsed)


class ctkPathLineEdit(QWidget):
    Dirs, Files, Drives, NoDotAndDotDot = 0x001, 0x002, 0x004, 0x1000
    currentPathChanged = Signal(str)
    HISTORY_SIZE = 5

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._settingKey = ""
        self._combo = QComboBox(self)
        self._combo.setEditable(True)
        self._combo.setInsertPolicy(QComboBox.NoInsert)
        browse = QToolButton(self)
        browse.setText("...")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._combo, 1)
        layout.addWidget(browse)
        self._combo.editTextChanged.connect(self.currentPathChanged.emit)

    def _currentPath(self) -> str:
        return self._combo.currentText

    def setCurrentPath(self, path: str) -> None:
        if path != self._combo.currentText:
            self._combo.setEditText(path)

    def _getSettingKey(self) -> str:
        return self._settingKey

    def _setSettingKey(self, key: str) -> None:
        self._settingKey = key
        self.retrieveHistory()

    def history(self) -> list[str]:
        return [self._combo.itemText(i) for i in range(self._combo.count)]

    def retrieveHistory(self) -> None:
        current = self._currentPath()
        blocked = self._combo.blockSignals(True)
        self._combo.clear()
        self._combo.addItems([str(p) for p in (QSettings().value(self._settingKey) or [])] if self._settingKey else [])
        self._combo.setEditText(current)
        self._combo.blockSignals(blocked)

    def addCurrentPathToHistory(self) -> None:
        path = self._currentPath()
        if not path:
            return
        items = [path] + [p for p in self.history() if p != path]
        blocked = self._combo.blockSignals(True)
        self._combo.clear()
        self._combo.addItems(items[: self.HISTORY_SIZE])
        self._combo.setEditText(path)
        self._combo.blockSignals(blocked)
        if self._settingKey:
            QSettings().setValue(self._settingKey, items[: self.HISTORY_SIZE])

    currentPath = Property(str, _currentPath, setCurrentPath)
    settingKey = Property(str, _getSettingKey, _setSettingKey)


STANDINS = {"ctkCollapsibleButton": ctkCollapsibleButton, "ctkPathLineEdit": ctkPathLineEdit}


def make_ctk_module() -> types.ModuleType:
    """`ctk`: the stand-ins, and an empty QWidget subclass for any other name asked for."""
    ctk = types.ModuleType("ctk", __doc__)
    ctk.__dict__.update(STANDINS)
    created: dict[str, type] = {}

    def __getattr__(name: str):
        if not name.startswith("ctk"):
            raise AttributeError(name)
        return created.setdefault(name, type(name, (QWidget,), {}))

    ctk.__getattr__ = __getattr__
    return ctk
