"""Static checks of the Slicer extension: .ui files, widget names, CMake file lists, import-time dependencies."""

from __future__ import annotations

import ast
import functools
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
LIGHT_ENGINE = {"emim", "emim.contract"}  # the engine modules a client may import: stdlib only


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
    """Top-level packages imported at module level, except the engine's stdlib-only contract (emim.contract)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names if alias.name not in LIGHT_ENGINE}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module not in LIGHT_ENGINE:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_no_engine_or_torch_import_at_module_import_time(module):
    for source in module.rglob("*.py"):
        assert _top_level_imports(source) & HEAVY == set(), source


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_importing_the_logic_loads_neither_torch_nor_the_engine(module):
    # every module folder and the shared package on the path, as in Slicer where all share one folder
    paths = [str(m) for m in MODULES] + [str(REPO)]
    code = (f"import sys; sys.path[:0] = {paths!r}; import {module.name}Lib.logic; "
            "import EMIMCommonLib.headless; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r and m not in %r))" % (HEAVY, LIGHT_ENGINE))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _imported_modules(folder: Path) -> set[str]:
    """Every module named by an import (top level or local) in the Python files under `folder`."""
    names = set()
    for source in folder.rglob("*.py"):
        for node in _nodes(source):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
    return names


def test_the_engine_imports_no_slicer_qt_ctk_or_vtk():
    """The engine runs without Slicer (CLI, torchrun, a plain Python): no import of the application's packages."""
    imported = {name.split(".")[0] for name in _imported_modules(REPO / "emim")}
    assert imported.isdisjoint({"slicer", "qt", "ctk", "vtk", "PythonQt", "PySide6"}), imported


def test_both_modules_use_the_shared_client_package_and_training_never_imports_segmentation_code():
    segmentation, training = (_imported_modules(REPO / name) for name in ("EMIMSegmentation", "EMIMTraining"))
    assert not [name for name in training if name.startswith("EMIMSegmentationLib")]
    shared = {"EMIMCommonLib.process", "EMIMCommonLib.job", "EMIMCommonLib.headless", "EMIMCommonLib.install"}
    assert shared <= segmentation | _imported_modules(REPO / "EMIMSegmentation" / "EMIMSegmentationLib")
    assert {"EMIMCommonLib.process", "EMIMCommonLib.job", "EMIMCommonLib.headless"} <= training
    for lib in ("EMIMSegmentation/EMIMSegmentationLib", "EMIMTraining/EMIMTrainingLib"):  # no second copy
        assert not any((REPO / lib / f"{name}.py").exists() for name in ("process", "job", "headless", "install"))
    top = (REPO / "CMakeLists.txt").read_text()  # installed beside the modules, with what it reads
    assert "EMIMCommonLib/*.py" in top and "Resources/requirements.txt" in top and "Resources/SampleData/*" in top


def test_json_resources_parse():
    for path in list(REPO.glob("Resources/**/*.json")) + [p for m in MODULES for p in m.rglob("*.json")]:
        json.loads(path.read_text())
    entry = json.loads((REPO / "Resources" / "ExtensionsIndex" / "EMIM.json").read_text())
    assert entry["build_dependencies"] == ["PyTorch"] and entry["scm_url"].endswith(".git")


# Packages a stock 3D Slicer 5.8 does not ship (Slicer's SuperBuild python-* projects give numpy, scipy, SimpleITK,
# pydicom, pillow, requests, packaging, GitPython...): the installer adds them, so no module file may need them to load.
NOT_IN_STOCK_SLICER = HEAVY | {"psutil", "einops", "highdicom", "pandas", "matplotlib", "yaml"}


def _skip_without_the_panel_harness() -> None:
    from support.slicer_gui import unavailable

    if unavailable():
        pytest.skip(unavailable())


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_a_module_file_loads_with_only_what_a_stock_slicer_ships(module):
    """The module file is imported as Slicer does at start-up, with every package a stock Slicer lacks made
    unimportable (psutil included), on the panel harness (Slicer's own Python layer over slicer-core)."""
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    _skip_without_the_panel_harness()
    blocked = sorted(NOT_IN_STOCK_SLICER - {"emim"})  # the engine package ships with the extension
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not in a stock Slicer")
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(REPO / "Testing")!r})
from support import slicer_app_standin
slicer_app_standin.install()
import {module.name}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {sorted(HEAVY)!r} and m not in {sorted(LIGHT_ENGINE)!r})
print(heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@functools.cache
def _nodes(source: Path) -> tuple[ast.AST, ...]:
    """Every node of a source file, parsed once for all the static checks that walk it."""
    return tuple(ast.walk(ast.parse(source.read_text())))


def _python_sources() -> list[Path]:
    folders = ["emim", "EMIMCommonLib", "EMIMSegmentation", "EMIMTraining"]
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def _literal_definitions(choices: tuple[str, ...]) -> list[str]:
    """Where a tuple, list or set literal made only of (two or more of) `choices` is written."""
    found = []
    for source in _python_sources():
        for node in _nodes(source):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2 and all(
                    isinstance(e, ast.Constant) and e.value in choices for e in node.elts):
                found.append(f"{source.relative_to(REPO)}:{node.lineno}")
    return found


@pytest.mark.parametrize("name", ["DEVICE_CHOICES", "PRESET_NAMES", "MASK_PATTERNS", "MODEL_TASKS",
                                  "TRAINING_COMMANDS", "PROGRESS_MODES", "NORMALIZATIONS", "OUTPUT_FORMATS",
                                  "RECONSTRUCTION_OUTPUTS", "BRATS_MODALITIES"])
def test_each_choice_list_is_written_once_in_the_contract(name):
    import emim.contract as contract

    choices = tuple(getattr(contract, name)) + ((contract.HYBRID,) if name == "MASK_PATTERNS" else ())
    found = _literal_definitions(choices)
    assert len(found) == 1 and found[0].startswith("emim/contract.py:"), found


@pytest.mark.parametrize("name", ["CONFIG_FILE", "METRICS_FILE", "LOG_FILE", "CASES_FILE", "WEIGHTS_FILE",
                                  "METADATA_FILE", "STARTER_MODEL", "STARTER_PRETRAINING", "MISSING_DICE"])
def test_each_shared_name_is_written_once_in_the_contract(name):
    import emim.contract as contract

    value = getattr(contract, name)
    places = [f"{source.relative_to(REPO)}" for source in _python_sources()
              for node in _nodes(source)
              if isinstance(node, ast.Constant) and node.value == value]
    assert places == ["emim/contract.py"]


def _literal_defaults(value: object) -> list[str]:
    """Where `value` is written as a default: of an argument, a dataclass field, or a `.get(key, default)`."""
    found = []
    for source in _python_sources():
        for node in _nodes(source):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defaults = node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
            elif isinstance(node, ast.AnnAssign):
                defaults = [node.value] if node.value is not None else []
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                defaults = node.args[1:]
            elif isinstance(node, ast.keyword) and node.arg == "default":
                defaults = [node.value]
            else:
                continue
            found += [f"{source.relative_to(REPO)}:{d.lineno}" for d in defaults
                      if isinstance(d, ast.Constant) and d.value == value]
    return found


def test_no_default_spells_out_the_default_normalisation_or_preset():
    from emim.contract import DEFAULT_NORMALIZATION, DEFAULT_PRESET

    assert _literal_defaults(DEFAULT_NORMALIZATION) == []
    assert _literal_defaults(DEFAULT_PRESET) == []


# the shared numeric knobs, as Python names and as command-line options
SHARED_KNOBS = {"patch_ratio": "PATCH_RATIO", "position_ratio": "POSITION_RATIO", "pbt_levels": "PBT_LEVELS",
                "pbt_weight": "PBT_WEIGHT", "log_every": "LOG_EVERY", "val_fraction": "VAL_FRACTION"}


def _knob_literal_defaults() -> list[str]:
    """Where a shared knob's default is a number written out: an argument, a dataclass field, an argparse option."""
    found = []
    for source in _python_sources():
        for node in _nodes(source):
            pairs: list[tuple[str, ast.AST]] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = node.args.args[len(node.args.args) - len(node.args.defaults):]
                pairs = [(a.arg, d) for a, d in zip(positional, node.args.defaults)]
                pairs += [(a.arg, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                pairs = [(node.target.id, node.value)]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "add_argument" and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                name = node.args[0].value.lstrip("-").replace("-", "_")
                pairs = [(name, k.value) for k in node.keywords if k.arg == "default"]
            found += [f"{source.relative_to(REPO)}:{value.lineno} {name}" for name, value in pairs
                      if name in SHARED_KNOBS and isinstance(value, ast.Constant) and not isinstance(value.value, str)
                      and value.value is not None]
    return found


def test_each_shared_knob_takes_its_default_from_the_contract_everywhere():
    import emim.contract as contract

    assert all(hasattr(contract, constant) for constant in SHARED_KNOBS.values())
    assert _knob_literal_defaults() == []


def test_each_preset_is_one_record_keyed_by_the_contracts_names():
    """`emim.config.PRESETS` holds each preset's model, recipe and UNETR width; no other table is keyed by preset."""
    from emim.config import PRESETS
    from emim.contract import PRESET_NAMES

    assert tuple(PRESETS) == PRESET_NAMES
    tables = [f"{source.relative_to(REPO)}:{node.lineno}" for source in _python_sources()
              for node in _nodes(source) if isinstance(node, ast.Dict) and node.keys
              and all(isinstance(k, ast.Constant) and k.value in PRESET_NAMES for k in node.keys)]
    assert tables == []


def _kind_literals(kinds: set[str]) -> list[str]:
    """Where an output or metrics `kind` of `kinds` is spelled out: `.event(..., kind="x")`, `{"kind": "x"}`,
    `x.get("kind") == "x"` or `x["kind"] == "x"`."""
    def is_kind_lookup(node: ast.AST) -> bool:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "kind"
        return isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "kind"

    found = []
    for source in _python_sources():
        for node in _nodes(source):
            values: list[ast.AST] = []
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "event":
                values = [k.value for k in node.keywords if k.arg == "kind"]
            elif isinstance(node, ast.Dict):
                values = [v for k, v in zip(node.keys, node.values)
                          if isinstance(k, ast.Constant) and k.value == "kind"]
            elif isinstance(node, ast.Compare) and is_kind_lookup(node.left):
                values = node.comparators
            found += [f"{source.relative_to(REPO)}:{v.lineno} {v.value!r}" for v in values
                      if isinstance(v, ast.Constant) and v.value in kinds]
    return found


def test_each_output_and_metrics_kind_is_named_from_the_contract_on_both_sides():
    import emim.contract as contract

    kinds = {contract.LABEL_OUTPUT, contract.VOLUMES_OUTPUT, contract.REPORT_OUTPUT, contract.SYNTHETIC_OUTPUT,
             contract.PROBABILITY_OUTPUT, contract.MODEL_OUTPUT, contract.CASE_OUTPUT, contract.TRAIN_RECORD,
             contract.EVAL_RECORD, *contract.RECONSTRUCTION_OUTPUTS}
    assert _kind_literals(kinds) == []


def test_no_line_of_the_engine_or_the_modules_is_wider_than_120_characters():
    wide = [f"{path.relative_to(REPO)}:{number}" for path in _python_sources()
            for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > 120]
    assert wide == []


def test_the_contract_needs_nothing_but_the_standard_library():
    tree = ast.parse((REPO / "emim" / "contract.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_each_training_knob_has_its_default_written_once():
    """The settings dataclass holds the defaults; the module's parameter node and the batch script take theirs
    from it, so a default changed there changes everywhere (and the node reads back as the same settings)."""
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    _skip_without_the_panel_harness()
    code = f"""
import sys
sys.path.insert(0, {str(REPO / "Testing")!r})
from support import slicer_app_standin
slicer_app_standin.install()
import EMIMTraining, EMIMTrainingBatch
from EMIMTrainingLib.settings import DEFAULTS, settings_from_parameters
node = EMIMTraining.EMIMTrainingLogic().getParameterNode()
assert settings_from_parameters(node) == DEFAULTS, (settings_from_parameters(node), DEFAULTS)
import dataclasses
batch = EMIMTrainingBatch.settings_from_args(EMIMTrainingBatch.parse_args(["--run", "r"]))
assert dataclasses.replace(batch, run="") == DEFAULTS, (batch, DEFAULTS)
print("same")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    source = (REPO / "EMIMTraining" / "EMIMTraining.py").read_text()
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef)
                and n.name == "EMIMTrainingParameterNode")
    literal = [f.target.id for f in node.body if isinstance(f, ast.AnnAssign) and isinstance(f.value, ast.Constant)
               and f.value.value is not None]  # None: a path not chosen yet
    assert literal == [], "parameter node defaults written as literals instead of taken from DEFAULTS"
