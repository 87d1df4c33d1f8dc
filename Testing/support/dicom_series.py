"""Write a NIfTI volume as a real DICOM MR series with SimpleITK (one file per slice, the geometry in
ImagePositionPatient/ImageOrientationPatient/PixelSpacing), as a scanner export would hold it."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_series(nifti: Path, folder: Path, description: str, study_uid: str, series_uid: str,
                 frame_of_reference: str, series_number: int, shift_slice: int | None = None,
                 patient: str = "EMIM-TEST") -> list[Path]:
    """The volume as `folder`/slice-NNN.dcm of PatientID `patient`; `shift_slice` moves that slice's position by
    half a slice (uneven spacing, to test the refusal)."""
    volume = sitk.ReadImage(str(nifti))
    folder.mkdir(parents=True, exist_ok=True)
    direction = volume.GetDirection()
    orientation = [direction[0], direction[3], direction[6], direction[1], direction[4], direction[7]]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(volume.GetDepth()):
        image = volume[:, :, k]
        position = list(volume.TransformIndexToPhysicalPoint((0, 0, k)))
        if k == shift_slice:
            position = [p + 0.5 * volume.GetSpacing()[2] * d for p, d in zip(position, direction[2::3])]
        tags = {
            "0008|0016": MR_IMAGE_STORAGE, "0008|0018": f"{series_uid}.{k + 1}", "0008|0060": "MR",
            "0008|0020": "20260101", "0008|0030": "120000", "0008|0050": "ACC1", "0008|0090": "",
            "0010|0010": "Test^Patient", "0010|0020": patient, "0010|0030": "19700101", "0010|0040": "O",
            "0020|000d": study_uid, "0020|000e": series_uid, "0020|0010": "1", "0020|0011": str(series_number),
            "0020|0013": str(k + 1), "0020|0052": frame_of_reference, "0008|103e": description,
            "0018|1030": description, "0020|0032": "\\".join(f"{v:.10g}" for v in position),
            "0020|0037": "\\".join(f"{v:.10g}" for v in orientation),
            "0018|0050": f"{volume.GetSpacing()[2]:.10g}", "0028|0030": "\\".join(
                f"{v:.10g}" for v in volume.GetSpacing()[1::-1]),
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        path = folder / f"slice-{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(image)
        paths.append(path)
    return paths


def write_case(case_folder: Path, case_id: str, out: Path, descriptions: dict[str, str],
               uneven: str | None = None) -> Path:
    """A BraTS-layout NIfTI case as one study of DICOM series (a subfolder per series), named by `descriptions`
    ({modality: SeriesDescription}); the series of modality `uneven` gets one misplaced slice."""
    root = "1.2.826.0.1.3680043.10.1234"
    for number, (modality, description) in enumerate(descriptions.items(), start=1):
        write_series(case_folder / f"{case_id}-{modality}.nii.gz", out / f"series{number}", description,
                     f"{root}.1", f"{root}.2.{number}", f"{root}.3", number, 2 if modality == uneven else None)
    return out
