"""Register the four-modality sample case in Slicer's Sample Data module, with SHA-256 checksums."""

from __future__ import annotations

from pathlib import Path

from .i18n import tr

SAMPLE_NAME = "EMIMBraTSCase"
# The release that hosts the sample files (upload the four files before publishing the extension).
BASE_URL = "https://github.com/emim-slicer/SlicerEMIM/releases/download/sample-data-v1/"
FILES = {  # file name -> checksum
    "BraTS-GLI-00360-000-t1n.nii.gz": "SHA256:0bf9e156395ce927c255855e6ffd6402f0ed2a2d072ce2c404b9df0bed0556d6",
    "BraTS-GLI-00360-000-t1c.nii.gz": "SHA256:8963fea8f000d3c1cc8fd10bcbba8cc5d3e40bd48edc975dde6b2aa2fff7d45d",
    "BraTS-GLI-00360-000-t2w.nii.gz": "SHA256:da6250f49fd6865c44f286be8d0e02187edcc0387db0b6a268d8a0a9c4e7b87f",
    "BraTS-GLI-00360-000-t2f.nii.gz": "SHA256:edab17e20c3755a5484f5789628e205fbfd673c0eb2c1abac042f10bcad3616c",
}


def register_sample_data(icon_folder: Path) -> None:
    """Called once Slicer's startup is complete (SampleData is a Slicer module, absent on slicer-core)."""
    import SampleData

    names = list(FILES)
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="E-MIM",
        sampleName=SAMPLE_NAME,
        uris=[BASE_URL + name for name in names],
        fileNames=names,
        nodeNames=[name.removesuffix(".nii.gz") for name in names],
        checksums=[FILES[name] for name in names],
        thumbnailFileName=str(icon_folder / "EMIMSegmentation.png"),
        loadFileType="VolumeFile",
    )


def sample_description() -> str:
    return tr("One BraTS 2023 glioma case with T1, T1 contrast-enhanced, T2 and FLAIR volumes.")
