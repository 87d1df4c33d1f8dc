"""A Slicer "application" without Qt, for batch runs and tests on the PyPI package slicer-core.

Inside 3D Slicer none of this is used: `slicer.mrmlScene` and `slicer.modules.<name>.logic()` already exist.
Here we build the same objects (scene, application logic, the module logics the Logic calls) and publish them
under those names, so the Logic's code is the same in both places.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import slicer
import vtk


@dataclass
class HeadlessSlicer:
    """Keeps Python references to every logic: VTK would otherwise free them while the scene still uses them."""

    scene: "slicer.vtkMRMLScene"
    app: "slicer.vtkSlicerApplicationLogic"
    logics: dict

    def close(self) -> None:
        """Empty the scene; the logics stay registered for the next case."""
        self.scene.Clear(1)


def running_in_slicer() -> bool:
    """True inside the 3D Slicer application (it has `slicer.app`); False on slicer-core."""
    return hasattr(slicer, "app")


# The module logics hold a raw (not reference-counted) pointer to the application logic: if the caller drops the
# returned object, the application logic would be freed under them and the next AddArchetypeVolume would crash.
# Keeping the current bootstrap here ties its lifetime to `slicer.mrmlScene`'s.
_current: HeadlessSlicer | None = None


def bootstrap(quiet: bool = True) -> HeadlessSlicer:
    """Create a scene with the application, Colors, Volumes, Segmentations, SubjectHierarchy and Data logics.

    Colors must be registered or label maps get no colour node; the slice-orientation presets are needed before
    any slice node is oriented. `quiet` silences VTK's stderr log (failures are checked through return values).
    """
    if quiet:
        vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
    scene = slicer.vtkMRMLScene()
    crosshair = slicer.vtkMRMLCrosshairNode()
    crosshair.SetCrosshairName("default")
    scene.AddNode(crosshair)
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    app.GetColorLogic().SetMRMLScene(scene)
    app.GetColorLogic().AddDefaultColorNodes()
    app.SetSliceLogics(vtk.vtkCollection())
    app.SetViewLogics(vtk.vtkCollection())
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)

    logics = {
        "colors": app.GetColorLogic(),
        "volumes": slicer.vtkSlicerVolumesLogic(),
        "segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
        "subjecthierarchy": slicer.vtkSlicerSubjectHierarchyModuleLogic(),
        "data": slicer.vtkSlicerDataModuleLogic(),
    }
    module_names = {"colors": "Colors", "volumes": "Volumes", "segmentations": "Segmentations",
                    "subjecthierarchy": "SubjectHierarchy", "data": "Data"}
    for key, logic in logics.items():
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app)
        app.SetModuleLogic(module_names[key], logic)

    slicer.mrmlScene = scene
    slicer.modules = SimpleNamespace(**{key: SimpleNamespace(logic=(lambda lg=logic: lg))
                                        for key, logic in logics.items()})
    global _current
    _current = HeadlessSlicer(scene=scene, app=app, logics=logics)
    return _current
