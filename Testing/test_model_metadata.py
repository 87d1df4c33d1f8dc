"""The model metadata schema: every shipped model follows it, the file beside the engine is the schema the code checks,
the stdlib validator agrees with the reference `jsonschema` package, and a description that breaks it is refused with
the schema's message by the engine and by the Slicer module alike."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from emim.contract import METADATA_FILE
from emim.model_metadata import SCHEMA_FILE, _problems, schema_problems, schema_text
from support.model_edit import edit_metadata

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO / "EMIMSegmentation", REPO):  # the module's Lib and EMIMCommonLib, as Slicer finds them
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from EMIMSegmentationLib.errors import EMIMSegmentationError  # noqa: E402
from EMIMSegmentationLib.metadata import read_model_info  # noqa: E402

SHIPPED = sorted((REPO / "Resources" / "Models").glob(f"*/{METADATA_FILE}"))

# (what is broken, the edit, the schema's message for it)
BROKEN = [
    ("a colour of two values", lambda m: m["labels"][0].update(color=[220, 40]),
     "$.labels[0].color: [220, 40] is too short"),
    ("a colour past 255", lambda m: m["labels"][1].update(color=[0, 300, 0]),
     "$.labels[1].color[1]: 300 is greater than the maximum of 255"),
    ("no regions for a segmentation", lambda m: m.pop("regions"), "$: 'regions' is a required property"),
    ("a region without labels", lambda m: m["regions"][0].pop("labels"),
     "$.regions[0]: 'labels' is a required property"),
    ("an unknown task", lambda m: m.update(task="detection"),
     "$.task: 'detection' is not one of ['segmentation', 'classification', 'pretraining']"),
    ("an unknown normalisation", lambda m: m["preprocessing"].update(normalization="minmax"),
     "$.preprocessing.normalization: 'minmax' is not one of ['zscore-nonzero', 'zscore', 'max', 'none']"),
    ("a modality as a bare string", lambda m: m["modalities"].__setitem__(0, "t1n"),
     "$.modalities[0]: 't1n' is not of type 'object'"),
    ("a format version as text", lambda m: m.update(format_version="1"),
     "$.format_version: '1' is not of type 'integer'"),
    ("an overlap of 1", lambda m: m["inference"].update(overlap=1.0),
     "$.inference.overlap: 1.0 is greater than or equal to the maximum of 1"),
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_every_shipped_model_follows_the_schema(path):
    assert schema_problems(json.loads(path.read_text())) == []


def test_the_schema_file_beside_the_engine_is_the_schema_the_code_checks():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), \
        "run `python -m emim.model_metadata` to write the schema file again"


def test_the_schema_is_a_valid_draft_2020_12_schema_that_the_reference_validator_applies_as_ours_does():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    jsonschema.Draft202012Validator.check_schema(validator.schema)
    starter = json.loads((REPO / "Resources" / "Models" / "EMIM-starter-tiny" / METADATA_FILE).read_text())
    for path in SHIPPED:
        assert list(validator.iter_errors(json.loads(path.read_text()))) == []
    for what, edit, message in BROKEN:
        metadata = json.loads(json.dumps(starter))
        edit(metadata)
        reference = sorted(f"{error.json_path}: {error.message}" for error in validator.iter_errors(metadata))
        assert reference == sorted(schema_problems(metadata)) == [message], what


def test_the_validator_refuses_a_schema_keyword_it_does_not_implement():
    with pytest.raises(ValueError, match="'uniqueItems'"):
        _problems([1, 1], {"type": "array", "uniqueItems": True}, "$")
    # in JSON a boolean is no number
    assert _problems(True, {"type": "integer"}, "$") == ["$: True is not of type 'integer'"]


@pytest.fixture(scope="module")
def starter_copies(tmp_path_factory) -> Path:
    """One copy of the shipped starter model per broken description, each edited as BROKEN says."""
    root = tmp_path_factory.mktemp("broken-models")
    for index, (_, edit, _) in enumerate(BROKEN):
        folder = root / f"model{index}"
        shutil.copytree(REPO / "Resources" / "Models" / "EMIM-starter-tiny", folder)
        edit_metadata(folder, edit)
    return root


@pytest.mark.parametrize("index", range(len(BROKEN)), ids=[what for what, _, _ in BROKEN])
def test_a_description_that_breaks_the_schema_is_refused_with_its_message_by_engine_and_module(starter_copies, index,
                                                                                               emim):
    folder, message = starter_copies / f"model{index}", BROKEN[index][2]
    result = emim("model-info", str(folder))
    assert result.returncode == 2 and message in result.stderr and str(folder) in result.stderr, result.stderr
    with pytest.raises(EMIMSegmentationError) as refused:
        read_model_info(folder)
    assert message in str(refused.value) and str(folder) in str(refused.value)
