"""The module's sample case: a four-modality semi-synthetic glioma shipped in Resources/SampleData with checksums.

Real BraTS cases may not be redistributed freely, so the sample is the engine's own generated case
(`emim make-sample --cases 1 --seed 2026 --size small`: BraTS layout and field of view at 2 mm, 1.4 MB in all).
It is shipped rather than generated in Slicer because its checksums must hold wherever it is loaded: generated
bytes depend on the numpy/scipy versions of the Python that runs the generator. Sample Data "downloads" the files
from their file:// URLs into its cache and verifies each SHA256 itself, so every tutorial and self-test starts
from the same bytes. The checksums live in `<case>.sha256` beside the case folder (`sha256sum -c` format).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emim.contract import BRATS_MODALITIES

SAMPLE_NAME = "EMIMSyntheticGlioma"
CASE_ID = "BraTS-SYN-00001-000"
MODALITIES = BRATS_MODALITIES  # the sample case is a BraTS-layout case
SAMPLE_FOLDER = Path(__file__).resolve().parents[1] / "Resources" / "SampleData"


@dataclass(frozen=True)
class SampleFile:
    """One shipped file as Sample Data needs it: where it is, what to call the copy and node, its checksum."""

    path: Path
    sha256: str

    @property
    def uri(self) -> str:
        return self.path.as_uri()

    @property
    def cache_name(self) -> str:
        return f"EMIMSample-{self.path.name}"

    @property
    def node_name(self) -> str:
        return self.path.name.removesuffix(".nii.gz")

    @property
    def checksum(self) -> str:
        return f"SHA256:{self.sha256}"


def sample_case_folder(root: Path = SAMPLE_FOLDER) -> Path:
    """The shipped case folder (four modalities and the reference label), loadable by `logic.loadCase`."""
    return root / CASE_ID


def sample_files(root: Path = SAMPLE_FOLDER) -> dict[str, SampleFile]:
    """{modality or "seg": SampleFile} from the checksum manifest; a missing or unlisted file is an error."""
    manifest = root / f"{CASE_ID}.sha256"
    listed = {}
    for line in filter(str.strip, manifest.read_text(encoding="utf-8").splitlines()):
        digest, relative = line.split(maxsplit=1)
        listed[relative.lstrip("*")] = digest
    files = {}
    for key in (*MODALITIES, "seg"):
        relative = f"{CASE_ID}/{CASE_ID}-{key}.nii.gz"
        if relative not in listed or not (root / relative).is_file():
            raise FileNotFoundError(f"sample file {relative} is missing from {root} or its manifest {manifest.name}")
        files[key] = SampleFile(root / relative, listed[relative])
    return files


def sample_data_source(icon: Path, root: Path = SAMPLE_FOLDER) -> dict:
    """Keyword arguments of `SampleDataLogic.registerCustomSampleDataSource` for the four modalities."""
    files = [sample_files(root)[m] for m in MODALITIES]
    return {
        "category": "E-MIM",
        "sampleName": SAMPLE_NAME,
        "uris": [f.uri for f in files],
        "fileNames": [f.cache_name for f in files],
        "nodeNames": [f.node_name for f in files],
        "checksums": [f.checksum for f in files],
        "thumbnailFileName": str(icon),
        "loadFileType": "VolumeFile",  # newer Slicers call it loadFileTypes but still accept this older spelling
    }


def register_sample_data(icon: Path) -> None:
    """Called once Slicer's startup is complete (SampleData is a Slicer module, absent on slicer-core)."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(**sample_data_source(icon))
