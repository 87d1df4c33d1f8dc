"""Volumes in and out of files through Slicer's own readers and writers (storage nodes), keeping geometry exact."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import slicer
import vtk

from .errors import EMIMSegmentationError
from .geometry import dimensions, ijk_to_ras
from .i18n import tr
from .metadata import Modality
from .modalities import assign_modalities

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def volume_files(folder: Path) -> list[Path]:
    """Image files directly inside a case folder, sorted, hidden files skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(VOLUME_SUFFIXES))


def node_name_for(path: Path) -> str:
    """The file name without its (possibly double) extension, as Slicer names loaded volumes."""
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_complete(path: Path) -> None:
    """Refuse truncated .gz files: Slicer's reader silently returns a zero-filled volume for them."""
    if not str(path).lower().endswith(".gz"):
        return
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (OSError, EOFError) as error:
        raise EMIMSegmentationError(tr("'{path}' is damaged or incomplete ({error}); copy it again.")
                                    .format(path=path, error=error)) from error


def load_volume(path: Path, name: str | None = None, labelmap: bool = False):
    """Load one file with the Volumes logic; a readable message when Slicer cannot read it."""
    check_complete(Path(path))
    node = slicer.modules.volumes.logic().AddArchetypeVolume(str(path), name or node_name_for(path),
                                                             1 if labelmap else 0)
    if node is None:
        raise EMIMSegmentationError(tr("Could not read '{path}' as a 3D volume. Check that the file is a complete "
                                       "NIfTI/NRRD image (4D files must be split per modality).").format(path=path))
    return node


def load_case_folder(folder: str | Path, modalities: tuple[Modality, ...]) -> dict:
    """Load the files of one case that match the modalities; returns {modality name: volume node}.

    The volumes are placed in a subject-hierarchy study named after the folder, so outputs can join them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EMIMSegmentationError(tr("Case folder '{folder}' does not exist.").format(folder=folder))
    files = {node_name_for(p): p for p in volume_files(folder)}
    assignment = assign_modalities(list(files), modalities)
    problems = []
    for modality in modalities:
        if assignment.chosen[modality.name] is None:
            problems.append(tr("no file for {title} (expected a name matching {patterns})").format(
                title=modality.title, patterns=" or ".join(modality.patterns)))
        elif modality.name in assignment.ambiguous:
            problems.append(tr("several files could be {title}: {files}").format(
                title=modality.title, files=", ".join(assignment.ambiguous[modality.name])))
    if problems:
        raise EMIMSegmentationError(tr("Case folder '{folder}': {problems}. Rename the files or load them one by "
                                       "one and pick each modality by hand.").format(folder=folder,
                                                                                   problems="; ".join(problems)))
    scene = slicer.mrmlScene
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = sh.CreateStudyItem(sh.GetSceneItemID(), folder.name)
    loaded = {}
    for modality in modalities:
        node = load_volume(files[assignment.chosen[modality.name]])
        sh.SetItemParent(subject_hierarchy_item(node), study)
        loaded[modality.name] = node
    return loaded


def write_volume(node, path: Path) -> Path:
    """Write a volume (NIfTI when the name ends in .nii.gz) with a temporary storage node; the node is unchanged."""
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(1)
    if not storage.WriteData(node):
        raise EMIMSegmentationError(tr("Could not write volume '{name}' to '{path}': check free disk space and "
                                       "write permission.").format(name=node.GetName(), path=path))
    return path


def load_on_reference_grid(path: Path, reference, name: str, labelmap: bool):
    """Load an engine output and give it exactly the reference volume's grid.

    NIfTI stores the affine in float32, so a reloaded grid differs from the input's by ~1e-6 mm. We check that
    the file really is on the reference grid (same size, origin within 1e-3 mm, same axes) and then copy the
    reference matrix; a real mismatch is an engine bug and is reported, never papered over.
    """
    node = load_volume(path, name, labelmap=labelmap)
    same_size = dimensions(node) == dimensions(reference)
    if not same_size or not np.allclose(ijk_to_ras(node), ijk_to_ras(reference), atol=1e-3):
        node.GetScene().RemoveNode(node)
        raise EMIMSegmentationError(tr("The engine wrote '{path}' on a grid that differs from the input '{ref}'. "
                                       "Report this with the engine log.").format(path=path, ref=reference.GetName()))
    matrix = vtk.vtkMatrix4x4()
    reference.GetIJKToRASMatrix(matrix)
    node.SetIJKToRASMatrix(matrix)
    return node


def subject_hierarchy_item(node) -> int:
    """The node's subject-hierarchy item; created when missing (Slicer's GUI plugins do that, slicer-core has none)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    return sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)


def place_beside(node, reference) -> None:
    """Put `node` in the same subject-hierarchy folder/study as `reference`."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    parent = sh.GetItemParent(subject_hierarchy_item(reference))
    if parent:
        sh.SetItemParent(subject_hierarchy_item(node), parent)
