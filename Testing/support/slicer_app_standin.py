"""Run a module's own Slicer self-test (its ScriptedLoadableModuleTest) without the application.

The application (its Qt widgets, module manager, Sample Data) cannot run on the project's machines. Everything is
published by the panel harness (Testing/support/slicer_gui): Qt on PySide6 with PythonQt's attribute rules,
slicer-core's MRML, and Slicer's own ScriptedLoadableModule, parameterNodeWrapper and i18n from
../shared/slicer-python. The one stand-in kept here is the Sample Data module: `SampleDataLogic` keeps registered
sources and, to load one, does what Sample Data does with any source: copy each URI into a cache folder with
urllib (a temporary one here, removed when the process ends), verify its `SHA256:` checksum, load it as a volume.

Run in a separate process (it publishes `slicer.app`, which makes code believe it is inside Slicer):

    python Testing/support/slicer_app_standin.py EMIMSegmentation
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sys
import tempfile
import types
import unittest
from pathlib import Path
from urllib.request import urlretrieve

REPO = Path(__file__).resolve().parents[2]


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


@functools.cache
def _cache_folder() -> tempfile.TemporaryDirectory:
    """Slicer's cache folder: one per process, made at the first download and removed at exit."""
    return tempfile.TemporaryDirectory(prefix="emim-sampledata-")


class _SampleDataLogic:
    sources: dict[str, dict] = {}

    @staticmethod
    def registerCustomSampleDataSource(**source) -> None:
        _SampleDataLogic.sources[source["sampleName"]] = source

    def downloadSamples(self, sampleName: str) -> list:
        source = self.sources.get(sampleName)
        return fetch_sample_source(source, Path(_cache_folder().name)) if source else []


def sample_data_module() -> types.ModuleType:
    """The `SampleData` module as the E-MIM modules use it (register a source, download a sample)."""
    module = types.ModuleType("SampleData")
    module.SampleDataLogic = _SampleDataLogic
    return module


def install():
    """The panel harness in this process (see Testing/support/slicer_gui); returns its Panels."""
    sys.path.insert(0, str(REPO / "Testing"))
    from support.slicer_gui import install as install_panels

    return install_panels()


def run_self_test(module_name: str) -> bool:
    """Start the application with both modules (as Slicer does at start-up), run the module's test class."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")  # delayDisplay's messages
    panels = install()
    module = panels.app.manager.module(module_name).python_module
    result = unittest.TextTestRunner(verbosity=2).run(getattr(module, f"{module_name}Test")())
    return result.wasSuccessful()


if __name__ == "__main__":
    sys.exit(0 if run_self_test(sys.argv[1]) else 1)
