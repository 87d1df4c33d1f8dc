"""Static checks of the Slicer extension: .ui files, widget names, CMake file lists, import-time dependencies."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(p.parent for p in REPO.glob("*/CMakeLists.txt") if (p.parent / f"{p.parent.name}.py").is_file())
HEAVY = {"torch", "monai", "emim", "SimpleITK", "nibabel", "safetensors"}


def _module_files(module: Path) -> list[Path]:
    return sorted(p for p in module.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.name != "CMakeLists.txt" and not p.name.endswith(".pyc"))


def test_modules_found_and_registered_in_top_level_cmake():
    assert MODULES, "no scripted module folders found"
    top = (REPO / "CMakeLists.txt").read_text()
    for module in MODULES:
        assert f"add_subdirectory({module.name})" in top
    assert 'EXTENSION_DEPENDS "PyTorch"' in top and "emim/*.py" in top


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_every_file_listed_in_module_cmake(module):
    text = (module / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", module.name)
    listed = set(re.findall(r"^\s+([\w./-]+\.\w+)\s*$", text, flags=re.MULTILINE))
    files = {p.relative_to(module).as_posix() for p in _module_files(module)}
    assert files - listed == set(), "files not packaged by CMake"
    assert listed - files == set(), "CMake lists files that do not exist"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_ui_well_formed_and_every_named_widget_exists(module):
    ui_files = list(module.glob("Resources/UI/*.ui"))
    assert ui_files
    names: set[str] = set()
    for ui in ui_files:
        names |= {w.get("name") for w in ET.parse(ui).getroot().iter("widget")}
    used, prefixes = set(), set()
    for source in module.rglob("*.py"):
        text = source.read_text()
        used |= set(re.findall(r"\bui\.(\w+)", text))
        prefixes |= set(re.findall(r'getattr\(self\.ui, f"(\w+)\{', text))
    assert used, "no widget names found in the module code"
    assert used - names == set(), "widgets used in code but missing from the .ui"
    for prefix in prefixes:
        assert any(name.startswith(prefix) for name in names), prefix


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_no_engine_or_torch_import_at_module_import_time(module):
    for source in module.rglob("*.py"):
        assert _top_level_imports(source) & HEAVY == set(), source


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_importing_the_logic_loads_neither_torch_nor_the_engine(module):
    # every module folder on the path, as in Slicer where all scripted modules share one folder
    paths = [str(m) for m in MODULES]
    code = (f"import sys; sys.path[:0] = {paths!r}; import {module.name}Lib.logic; "
            "import EMIMSegmentationLib.headless; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (HEAVY,))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_training_module_reuses_the_segmentation_runner_instead_of_copying_it():
    """EMIMTraining imports EMIMSegmentationLib's process/job/i18n/errors; Slicer must load that module first."""
    lib = REPO / "EMIMTraining" / "EMIMTrainingLib"
    imports = set()
    for source in lib.glob("*.py"):
        imports |= {n.module for n in ast.walk(ast.parse(source.read_text()))
                    if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("EMIMSegmentationLib")}
    assert {"EMIMSegmentationLib.process", "EMIMSegmentationLib.job", "EMIMSegmentationLib.i18n",
            "EMIMSegmentationLib.errors"} <= imports
    assert not any((lib / name).exists() for name in ("process.py", "job.py", "headless.py", "install.py"))
    assert 'dependencies = ["EMIMSegmentation"]' in (REPO / "EMIMTraining" / "EMIMTraining.py").read_text()


def test_json_resources_parse():
    for path in list(REPO.glob("Resources/**/*.json")) + [p for m in MODULES for p in m.rglob("*.json")]:
        json.loads(path.read_text())
    entry = json.loads((REPO / "Resources" / "ExtensionsIndex" / "EMIM.json").read_text())
    assert entry["build_dependencies"] == ["PyTorch"] and entry["scm_url"].endswith(".git")
