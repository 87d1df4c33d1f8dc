"""Run a module's own Slicer self-test (its ScriptedLoadableModuleTest) on slicer-core, without the application.

The Slicer application cannot run on the project's machines. Its MRML, logics and storage nodes come from
slicer-core; what is missing is Slicer's pure-Python layer: the ScriptedLoadableModule base classes, the
parameter-node decorator, translation, `slicer.app`, and the Sample Data module. This file stands in for exactly
those, minimally and in the project's own words (nothing of Slicer's is copied):

- `ScriptedLoadableModuleTest` is a `unittest.TestCase` whose `delayDisplay` prints;
- `parameterNodeWrapper` returns the class unchanged and `translate` returns the text (no Qt here);
- `slicer.app` records signal connections so the harness can fire `startupCompleted()` like Slicer does;
- `SampleData.SampleDataLogic` keeps registered sources and, to load one, does what Sample Data does with any
  source: copy each URI into a cache folder with urllib, verify its `SHA256:` checksum, load it as a volume.

Everything the self-test then calls (the module file, its Logic, the engine subprocess, MRML) is the real code.
Run in a separate process (it publishes `slicer.app`, which makes code believe it is inside Slicer):

    python Testing/slicer_app_standin.py EMIMSegmentation
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import tempfile
import types
import unittest
from pathlib import Path
from urllib.request import urlretrieve

REPO = Path(__file__).resolve().parents[1]
MODULES = ("EMIMSegmentation", "EMIMTraining")  # Slicer puts every scripted module folder on sys.path


def fetch_sample_source(source: dict, cache: Path) -> list:
    """Sample Data's download-verify-load loop for one registered source; returns the loaded volume nodes."""
    import slicer

    nodes = []
    for uri, name, node_name, checksum in zip(source["uris"], source["fileNames"], source["nodeNames"],
                                              source["checksums"], strict=True):
        path = cache / name
        urlretrieve(uri, path)
        algorithm, digest = checksum.split(":")
        if algorithm != "SHA256" or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"checksum of {name} does not match {checksum}")
        node = slicer.modules.volumes.logic().AddArchetypeVolume(str(path), node_name, 0)
        if node is None:
            raise ValueError(f"{path} could not be loaded as a volume")
        nodes.append(node)
    return nodes


class _App:
    """`slicer.app`: remembers connected slots so `emit` can play a signal (only startupCompleted is used)."""

    def __init__(self) -> None:
        self.slots: dict[str, list] = {}

    def connect(self, signal: str, slot) -> None:
        self.slots.setdefault(signal, []).append(slot)

    def emit(self, signal: str) -> None:
        for slot in self.slots.get(signal, []):
            slot()

    def processEvents(self, *args) -> None:
        """Nothing queues Qt events here; the self-tests call this while polling engine jobs."""


class _SampleDataLogic:
    sources: dict[str, dict] = {}

    @staticmethod
    def registerCustomSampleDataSource(**source) -> None:
        _SampleDataLogic.sources[source["sampleName"]] = source

    def downloadSamples(self, sampleName: str) -> list:
        source = self.sources.get(sampleName)
        return fetch_sample_source(source, Path(tempfile.mkdtemp(prefix="emim-sampledata-"))) if source else []


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def install() -> _App:
    """Publish the stand-ins beside slicer-core's real `slicer` package and a headless scene."""
    import slicer

    sys.path[:0] = [str(REPO / name) for name in MODULES]  # as Slicer does for a source checkout
    import EMIMSegmentationLib  # noqa: F401  (its package puts EMIMCommonLib's folder on the path)
    from EMIMCommonLib.headless import bootstrap

    bootstrap()

    class ScriptedLoadableModule:
        def __init__(self, parent) -> None:
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message: str, msec: int = 0) -> None:
            print(message, flush=True)

    slicer.ScriptedLoadableModule = _module(
        "slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
        ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleTest=ScriptedLoadableModuleTest)
    slicer.parameterNodeWrapper = _module("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls)
    slicer.i18n = _module("slicer.i18n", translate=lambda context, text: text, tr=lambda text: text)
    _module("SampleData", SampleDataLogic=_SampleDataLogic)
    slicer.app = _App()
    return slicer.app


def run_self_test(module_name: str) -> bool:
    """Import the module file, create its module object (as Slicer does at start-up), run its test class."""
    app = install()
    module = importlib.import_module(module_name)
    parent = types.SimpleNamespace(path=str(REPO / module_name / f"{module_name}.py"))
    getattr(module, module_name)(parent)
    app.emit("startupCompleted()")
    result = unittest.TextTestRunner(verbosity=2).run(getattr(module, f"{module_name}Test")())
    return result.wasSuccessful()


if __name__ == "__main__":
    sys.exit(0 if run_self_test(sys.argv[1]) else 1)
