"""A corrected segmentation back into training data: the inputs and the labels as one case folder the engine reads.

Segment, correct in Segment Editor, add, adapt (`emim finetune --init`), segment better: the folder is
`CASES/<case>/<case>-<modality>.nii.gz` and `<case>-seg.nii.gz` (the BraTS layout `find_cases` reads), the labels
carry the model's label values on the reference input's grid. It is written into a private folder first and
renamed into place, so a case is there whole or not at all, and an existing case is never overwritten.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import slicer

from emim.contract import name_problem

from .errors import EMIMSegmentationError
from .i18n import tr
from .metadata import ModelInfo
from .volumes_io import write_volume

LABEL_SUFFIX = "seg"  # <case>-seg.nii.gz, the BraTS name the engine finds labels by


def label_values(segmentation, info: ModelInfo) -> dict[str, int]:
    """{segment ID: the model's label value} by segment name; a segment the model does not know is refused."""
    by_name = {label.name: label.value for label in info.labels}
    segments = segmentation.GetSegmentation()
    values, unknown = {}, []
    for index in range(segments.GetNumberOfSegments()):
        segment_id = segments.GetNthSegmentID(index)
        name = segments.GetSegment(segment_id).GetName()
        if name in by_name:
            values[segment_id] = by_name[name]
        else:
            unknown.append(name)
    if unknown or not values:
        raise EMIMSegmentationError(tr("The segments {unknown} are not labels of model '{model}' ({labels}); rename "
                                       "them to those labels in Segment Editor, or remove them.").format(
            unknown=", ".join(repr(n) for n in unknown) or tr("(none)"), model=info.name,
            labels=", ".join(f"{lb.value} {lb.name}" for lb in info.labels)))
    return values


def label_array(segmentation, values: dict[str, int], reference) -> np.ndarray:
    """The segments as one label map (KJI, like slicer.util.arrayFromVolume) on `reference`'s grid."""
    labels = np.zeros(slicer.util.arrayFromVolume(reference).shape, dtype=np.uint8)
    for segment_id, value in sorted(values.items(), key=lambda item: item[1]):
        labels[slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, reference) > 0] = value
    return labels


def add_training_case(inputs: dict, segmentation, info: ModelInfo, folder: str | Path, case_id: str) -> Path:
    """Write `inputs` ({modality: volume node}, every modality of the model) and `segmentation` as FOLDER/case_id."""
    problem = name_problem(case_id)
    if problem:
        raise EMIMSegmentationError(tr("Case name {problem}.").format(problem=problem))
    missing = [m.title for m in info.modalities if inputs.get(m.name) is None]
    if missing:
        raise EMIMSegmentationError(tr("A training case needs every sequence of the model; {missing} not "
                                       "chosen.").format(missing=", ".join(missing)))
    case = Path(folder) / case_id
    if case.exists() or case.is_symlink():
        raise EMIMSegmentationError(tr("{case} already exists; choose another case name (an existing case is never "
                                       "overwritten).").format(case=case))
    reference = inputs[info.modalities[0].name]
    labels = label_array(segmentation, label_values(segmentation, info), reference)
    case.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f".{case_id}.", dir=case.parent))
    scene = reference.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName("emim-training-labels"))
    try:
        labelmap.CopyOrientation(reference)
        slicer.util.updateVolumeFromArray(labelmap, labels)
        for modality in info.modalities:
            write_volume(inputs[modality.name], private / f"{case_id}-{modality.name}.nii.gz")
        write_volume(labelmap, private / f"{case_id}-{LABEL_SUFFIX}.nii.gz")
        os.rename(private, case)  # fails if a case with files of that name appeared meanwhile
    except OSError as error:
        raise EMIMSegmentationError(tr("Could not add the case to {folder}: {error}").format(
            folder=folder, error=error)) from error
    finally:
        scene.RemoveNode(labelmap)
        shutil.rmtree(private, ignore_errors=True)
    return case
