"""The `qt` module as Slicer's PythonQt presents it, built over PySide6.

Reproduced PythonQt behaviour (what the panels and Slicer's parameterNodeWrapper rely on):
- a Qt property is a Python attribute, read and written by name (`label.text = "..."`, `button.enabled`,
  `spinBox.value`), shadowing the C++ getter of the same name as PythonQt does;
- `QObject.name` is the object name (slicer.util.findChildren / childWidgetVariables read it);
- `qt.QUiLoader` builds the Slicer widgets of a .ui file (ctk and MRML stand-ins) and makes the .ui's own
  signal-slot connections between them (mrmlSceneChanged -> setMRMLScene), as Designer's generated code does.
Not reproduced: PythonQt's string-signature `connect("clicked()", slot)` on Qt objects, implicit conversions of
VTK objects in Qt signals (the stand-ins emit Python objects).
"""

from __future__ import annotations

import types
import xml.etree.ElementTree as ElementTree

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets


_get, _set = QtCore.QObject.property, QtCore.QObject.setProperty  # before any class is given attributes


class QtPropertyAttribute:
    """One Qt property as a Python attribute; on the class it still gives the original member (static methods)."""

    def __init__(self, name: str, original) -> None:
        self.name, self.original = name, original

    def __get__(self, obj, cls=None):
        return self.original if obj is None else _get(obj, self.name)

    def __set__(self, obj, value) -> None:
        if not _set(obj, self.name, value):
            raise AttributeError(f"{type(obj).__name__}.{self.name} could not be set to {value!r}")


class ObjectName:
    """PythonQt's `name`: the QObject's objectName."""

    def __get__(self, obj, cls=None):
        return self if obj is None else _get(obj, "objectName")

    def __set__(self, obj, value: str) -> None:
        _set(obj, "objectName", value)


# Getters that C++ calls as virtual methods: shiboken would take an attribute of that name for a Python override.
VIRTUAL_GETTERS = frozenset({"sizeHint", "minimumSizeHint"})


def expose_properties(cls: type) -> None:
    """Give `cls` (a QObject class) PythonQt's property attributes, its own and inherited ones."""
    meta = cls.staticMetaObject
    for index in range(meta.propertyCount()):
        name = meta.property(index).name()
        if name not in VIRTUAL_GETTERS and not isinstance(cls.__dict__.get(name), QtPropertyAttribute):
            setattr(cls, name, QtPropertyAttribute(name, getattr(cls, name, None)))


def _members(module) -> dict:
    """A PySide6 module's public names (its types are created on first access, so `vars` misses some)."""
    return {name: getattr(module, name) for name in dir(module) if not name.startswith("_")}


def _qobject_classes():
    for module in (QtCore, QtGui, QtWidgets):
        for value in _members(module).values():
            if isinstance(value, type) and issubclass(value, QtCore.QObject):
                yield value


def split_connections(ui_path: str) -> tuple[bytes, list[tuple[str, str, str, str]]]:
    """The .ui file without its <connections>, and those as (sender, signal, receiver, slot) names.

    Qt's loader can only connect C++ signatures; the stand-ins' signals are Python ones, so they are made by name.
    """
    root = ElementTree.parse(ui_path).getroot()
    for widget in root.iter("widget"):  # ctkPathLineEdit's `filters` flags: not reproduced, so not loaded
        for prop in widget.findall("property"):
            if prop.get("name") == "filters" and widget.get("class") == "ctkPathLineEdit":
                widget.remove(prop)
    found = []
    for block in root.findall("connections"):
        for connection in block.iter("connection"):
            found.append(tuple(connection.findtext(key).split("(")[0]
                               for key in ("sender", "signal", "receiver", "slot")))
        root.remove(block)
    return ElementTree.tostring(root), found


def connect_by_name(root, connections) -> None:
    objects = {root.name: root, **{child.name: child for child in root.findChildren(QtCore.QObject)}}
    for sender, signal, receiver, slot in connections:
        getattr(objects[sender], signal).connect(getattr(objects[receiver], slot))


def make_qt_module(standins: dict[str, type]) -> types.ModuleType:
    """A `qt` module: every QtCore/QtGui/QtWidgets name, PythonQt attributes, and a loader for `standins`."""
    for cls in _qobject_classes():
        expose_properties(cls)
    QtCore.QObject.name = ObjectName()

    class QUiLoader(QtUiTools.QUiLoader):
        """Creates `standins` (ctk, MRML widgets) by class name, then wires the file's connections."""

        def createWidget(self, className, parent=None, name=""):
            if className not in standins:
                return super().createWidget(className, parent, name)
            widget = standins[className](parent)
            widget.setObjectName(name)
            return widget

        def load(self, device, parent=None):
            if not isinstance(device, QtCore.QFile):
                return super().load(device, parent)
            ui, connections = split_connections(device.fileName())
            buffer = QtCore.QBuffer()
            buffer.setData(QtCore.QByteArray(ui))
            buffer.open(QtCore.QIODevice.ReadOnly)
            widget = super().load(buffer, parent)
            if widget is not None:
                connect_by_name(widget, connections)
            return widget

    qt = types.ModuleType("qt", __doc__)
    for module in (QtCore, QtGui, QtWidgets):
        qt.__dict__.update(_members(module))
    qt.QUiLoader = QUiLoader
    return qt
