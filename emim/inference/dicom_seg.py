"""DICOM SEG output (`emim segment --output-format dicom-seg`): the label map as a DICOM Segmentation that
references the source series, written with highdicom (an optional dependency: `pip install highdicom`).

One binary segment per label of the model (segment numbers 1..n in the metadata's label order), each with the
label's name, colour and the DICOM/SNOMED-CT category, type and anatomic region codes the Slicer module gives its
segments (`emim.labels`), so that Slicer's DICOM module and a PACS show them alike. Frames follow the reference
series' slices: the converted NIfTI's slice k is the series' file k (`emim.data.dicom`), so each frame is placed by
its source slice's own position and orientation.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from emim.errors import EmimError

SEG_SUFFIX = ".seg.dcm"  # after the case's output stem


def _concept(code: dict[str, str]):
    from highdicom.sr import CodedConcept

    return CodedConcept(code["CodeValue"], code["CodingSchemeDesignator"], code["CodeMeaning"])


def segment_descriptions(labels: Sequence[dict[str, Any]], algorithm: str, version: str) -> list:
    """highdicom SegmentDescriptions of the model's labels, numbered 1..n in order."""
    from highdicom import AlgorithmIdentificationSequence
    from highdicom.color import CIELabColor
    from highdicom.seg import SegmentAlgorithmTypeValues, SegmentDescription
    from pydicom.sr.codedict import codes

    identification = AlgorithmIdentificationSequence(name=algorithm[:64], version=version,
                                                     family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for number, label in enumerate(labels, start=1):
        terminology = label.get("terminology") or {}
        if not terminology.get("category") or not terminology.get("type"):
            raise EmimError(f"label {label['value']} ({label['name']}) of the model has no terminology codes, which "
                            "a DICOM SEG needs; re-export the model, or use --output-format nifti.")
        region = terminology.get("anatomicRegion")
        descriptions.append(SegmentDescription(
            segment_number=number, segment_label=str(label["name"])[:64],
            segmented_property_category=_concept(terminology["category"]),
            segmented_property_type=_concept(terminology["type"]),
            algorithm_type=SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=identification,
            anatomic_regions=[_concept(region)] if region else None,
            display_color=CIELabColor.from_rgb(*label["color"][:3]) if label.get("color") else None))
    return descriptions


def dicom_seg_bytes(labels_on_disk: np.ndarray, series: Any, label_table: Sequence[dict[str, Any]],
                    model_name: str, series_number: int = 999) -> bytes:
    """The SEG file's bytes for a label map in the converted NIfTI's voxel order (columns, rows, slices)."""
    try:
        import highdicom as hd
        import pydicom
        import pydicom.errors
    except ImportError:
        raise EmimError("--output-format dicom-seg needs the highdicom package: pip install highdicom (or "
                        "pip install 'emim[dicom]'); or use --output-format nifti.") from None
    from emim import __version__

    try:
        sources = [pydicom.dcmread(str(path)) for path in series.files]
    except (pydicom.errors.InvalidDicomError, OSError) as error:
        raise EmimError(f"the series '{series.name}' ({series.files[0].parent}) cannot be read for a DICOM SEG "
                        f"({error}). Use --output-format nifti, or re-export the series.") from None
    frames = np.ascontiguousarray(np.transpose(labels_on_disk, (2, 1, 0)))  # (slices, rows, columns)
    if frames.shape != (len(sources), int(sources[0].Rows), int(sources[0].Columns)):
        raise EmimError(f"the label map {labels_on_disk.shape} does not fit the series '{series.name}' "
                        f"({len(sources)} slices of {sources[0].Rows} x {sources[0].Columns}); report this.")
    numbers = np.zeros(256, dtype=np.uint8)
    for number, label in enumerate(label_table, start=1):
        numbers[int(label["value"])] = number
    descriptions = segment_descriptions(label_table, model_name, __version__)
    try:
        segmentation = hd.seg.Segmentation(
            source_images=sources, pixel_array=numbers[frames],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="E-MIM", manufacturer_model_name=model_name[:64], software_versions=__version__,
            device_serial_number="none", series_description=f"E-MIM {model_name}"[:64], omit_empty_frames=False)
        buffer = io.BytesIO()
        segmentation.save_as(buffer)
    except (ValueError, TypeError, AttributeError, KeyError) as error:  # highdicom's checks of the source headers
        raise EmimError(f"a DICOM SEG cannot reference the series '{series.name}' ({series.files[0].parent}): "
                        f"{error}. Use --output-format nifti, or re-export the series.") from None
    return buffer.getvalue()
