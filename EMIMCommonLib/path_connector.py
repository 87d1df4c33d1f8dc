"""Bind an optional path parameter (`Optional[pathlib.Path]`) to a ctkPathLineEdit, empty text meaning "none".

Slicer's own ctkPathLineEdit connector takes `pathlib.Path` only, whose empty value reads back as `Path(".")`: the
panel would show "." for a folder not yet chosen and a run would start in the working directory. This connector is
registered through Slicer's documented extension point (`parameterNodeGuiConnector`) and is found by Slicer's
`createGuiConnector` like the built-in ones. Imported by the module files (Slicer only; the Logic never needs it).
"""

from __future__ import annotations

import pathlib
import typing

import ctk
from slicer.parameterNodeWrapper import GuiConnector, parameterNodeGuiConnector, unannotatedType

OptionalPath = typing.Optional[pathlib.Path]


@parameterNodeGuiConnector
class ctkPathLineEditToOptionalPathConnector(GuiConnector):
    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        return type(widget) == ctk.ctkPathLineEdit and unannotatedType(datatype) == OptionalPath

    @staticmethod
    def create(widget, datatype):
        return ctkPathLineEditToOptionalPathConnector(widget) if \
            ctkPathLineEditToOptionalPathConnector.canRepresent(widget, datatype) else None

    def __init__(self, widget) -> None:
        super().__init__()
        self._widget = widget

    def _connect(self) -> None:
        self._widget.currentPathChanged.connect(self.changed)

    def _disconnect(self) -> None:
        self._widget.currentPathChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self) -> pathlib.Path | None:
        return pathlib.Path(self._widget.currentPath) if self._widget.currentPath else None

    def write(self, value: pathlib.Path | None) -> None:
        self._widget.currentPath = "" if value is None else str(value)
