"""Run the modules' real panels (module files, .ui, Widget code) without the Slicer application.

Qt is PySide6 (offscreen); `qt`, `ctk` and the MRML widgets are small stand-ins with PythonQt's and Slicer's
behaviour (pythonqt.py, ctk_widgets.py, mrml_widgets.py, application.py say what each reproduces and what not);
MRML is the real slicer-core; `ScriptedLoadableModule`, `parameterNodeWrapper` and `i18n` are Slicer's own files
from ../shared/slicer-python, unmodified and never copied. `install()` publishes all of it in this process and
`uninstall()` takes it back, so other tests in the same pytest run see plain slicer-core again.

    panels = install()
    widget = panels.open("EMIMSegmentation")   # module created, panel set up and entered
    ...
    panels.uninstall()
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SLICER_PYTHON = REPO.parent / "shared" / "slicer-python"
SLICER_PACKAGE = SLICER_PYTHON / "Base" / "Python" / "slicer"
MODULES = ("EMIMSegmentation", "EMIMTraining")
PUBLISHED_MODULES = ("qt", "ctk", "SampleData", *MODULES)


def unavailable() -> str | None:
    """Why the panels cannot run here (for pytest.skip), or None."""
    if not SLICER_PACKAGE.is_dir():
        return f"Slicer's Python layer is not beside the checkout ({SLICER_PYTHON})"
    try:
        importlib.import_module("PySide6.QtUiTools")
    except ImportError:
        return "PySide6 is not installed (pip install -e .[test])"
    return None


class Panels:
    """The application with both modules registered; `open`, `select`, `close` drive it as a user does."""

    def __init__(self, app, headless, undo) -> None:
        self.app, self.headless, self._undo = app, headless, undo

    def open(self, name: str):
        """Select module `name` (its panel is made on first use) and return its Python widget."""
        self.app.selectModule(name)
        return self.panel(name).python

    def panel(self, name: str):
        return self.app.manager.module(name).widgetRepresentation()

    def wait(self, condition, timeout_s: float = 120.0, step_s: float = 0.05) -> None:
        """Let Qt run (timers, polls) until `condition()` holds; AssertionError after `timeout_s`."""
        import time

        end = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {condition}")
            self.app.processEvents()
            time.sleep(step_s)

    def grab(self, name: str, path: Path, width: int = 460) -> Path:
        """A PNG of module `name`'s panel as it is now drawn."""
        panel = self.panel(name)
        panel.resize(width, panel.sizeHint().height())
        panel.adjustSize()
        self.app.processEvents()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not panel.grab().save(str(path)):
            raise OSError(f"could not write {path}")
        return path

    def uninstall(self) -> None:
        self._undo()


def install(settings_folder: Path | None = None) -> Panels:
    """Publish Qt, the stand-ins, Slicer's Python layer, `slicer.app` and both modules in this process."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    import slicer

    qapp = QApplication.instance() or QApplication(["EMIM panels"])
    QCoreApplication.setOrganizationName("EMIM-panel-tests")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    if settings_folder is None:  # a private settings folder, gone when the process ends
        settings_folder = Path(tempfile.mkdtemp(prefix="emim-qsettings-"))
        atexit.register(shutil.rmtree, settings_folder, True)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(settings_folder))

    from . import ctk_widgets, mrml_widgets, pythonqt
    from .application import ScriptedModule, SlicerApplication, qSlicerScriptedLoadableModuleWidget

    saved_path, saved_sys_path = list(slicer.__path__), list(sys.path)
    saved_modules = {name: sys.modules.get(name) for name in PUBLISHED_MODULES}
    sys.modules["qt"] = pythonqt.make_qt_module({**ctk_widgets.STANDINS, **mrml_widgets.STANDINS})
    sys.modules["ctk"] = ctk_widgets.make_ctk_module()
    published = mrml_widgets.publish() + ["qSlicerScriptedLoadableModule", "qSlicerScriptedLoadableModuleWidget"]
    slicer.qSlicerScriptedLoadableModule, slicer.qSlicerScriptedLoadableModuleWidget = \
        ScriptedModule, qSlicerScriptedLoadableModuleWidget
    slicer.__path__.append(str(SLICER_PACKAGE))  # Slicer's own ScriptedLoadableModule, parameterNodeWrapper, i18n
    sys.path[:0] = [str(REPO / name) for name in MODULES] + [str(REPO)]

    from EMIMCommonLib.headless import bootstrap

    headless = bootstrap()
    headless.logics["plots"] = plots = slicer.vtkSlicerPlotsLogic()
    plots.SetMRMLScene(headless.scene)
    plots.SetMRMLApplicationLogic(headless.app)
    slicer.modules.plots = type(slicer.modules.volumes)(logic=lambda: plots)
    app = slicer.app = SlicerApplication(qapp, headless)
    from support.slicer_app_standin import sample_data_module  # noqa: E402  (Testing/ is on the path under pytest)

    sys.modules["SampleData"] = sample_data_module()
    for name in MODULES:
        path = REPO / name / f"{name}.py"
        module = ScriptedModule(name, path, importlib.import_module(name))
        app.manager.modules[name] = module
        setattr(slicer.modules, name.lower(), module)
    app.emit("startupCompleted()")

    def undo() -> None:
        import shiboken6
        from PySide6.QtWidgets import QWidget

        for name, module in app.manager.modules.items():  # the application quits: panels clean up first
            if module._panel is not None:
                app.manager.unload(name)
                for widget in [module._panel, *module._panel.findChildren(QWidget)]:
                    if hasattr(widget, "setMRMLScene"):  # drop the stand-ins' VTK observers on the scene
                        widget.setMRMLScene(None)
                shiboken6.delete(module._panel)  # C++ widgets go now, not in arbitrary order at exit
        shiboken6.delete(app.mainWindow)
        for name in list(sys.modules):
            if name.startswith(("slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper", "slicer.i18n",
                                "EMIMSegmentation", "EMIMTraining")) and name not in saved_modules:
                del sys.modules[name]
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for attribute in ("app", "ScriptedLoadableModule", "parameterNodeWrapper", "i18n", *published):
            if hasattr(slicer, attribute):
                delattr(slicer, attribute)
        slicer.__path__[:] = saved_path
        sys.path[:] = saved_sys_path
        headless.close()

    return Panels(app, headless, undo)
