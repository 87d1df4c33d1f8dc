"""The cases an inference command works on: case folders, folders of cases or datalists (`find_cases`), or one
case given file by file (`--image NAME=PATH`), each file assigned to a model's modality."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from emim.data.cases import Case, find_cases, is_nifti, without_suffix
from emim.data.modalities import ModalitySpec, strip_extension
from emim.errors import EmimError


def case_from_images(images: dict[str, str | Path], spec: ModalitySpec, allow_missing: bool = False) -> Case:
    """A case from explicit files per modality (`--image t1n=PATH ...`), checked against the model's modalities
    (`allow_missing`: a model fine-tuned with modality dropout takes a subset)."""
    unknown = [m for m in images if m not in spec.names]
    if unknown:
        raise EmimError(f"the model has no modality {', '.join(unknown)}; it takes exactly {len(spec.names)} "
                        f"images: {', '.join(spec.names)}. Name each --image after one of them.")
    missing = [m for m in spec.names if m not in images]
    if missing and (not allow_missing or not images):
        raise EmimError(f"got {len(images)} image(s) ({', '.join(images) or 'none'}) but the model needs "
                        f"{len(spec.names)}: {', '.join(spec.names)}; missing {', '.join(missing)}. Add "
                        f"--image {missing[0]}=PATH for each missing one.")
    paths = {m: Path(images[m]) for m in spec.names if m in images}
    first = next(iter(paths))
    return Case(without_suffix(strip_extension(paths[first].name), first), paths)


def resolve_cases(inputs: Sequence[str | Path], spec: ModalitySpec) -> list[Case]:
    """Case folders or folders of cases -> cases, their files assigned by the model's modality patterns."""
    cases: list[Case] = []
    for item in inputs:
        path = Path(item)
        if path.is_file() and is_nifti(path):
            raise EmimError(f"{path} is a single file; give a case folder, a folder of cases, or every modality "
                            f"with --image NAME=PATH ({', '.join(spec.names)}).")
        cases += find_cases(path, spec)
    ids = [c.case_id for c in cases]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise EmimError(f"case id(s) {', '.join(repeated)} appear more than once in the inputs; their outputs "
                        "would overwrite each other. Segment them into different --output folders.")
    return cases


def one_case(case: Case | str | Path | dict[str, str | Path], spec: ModalitySpec, allow_missing: bool = False) -> Case:
    """One case for `segment_case` from what a script or the Python console has at hand: a Case as it is,
    {modality: file} as `--image` gives it, or one case folder."""
    if isinstance(case, dict):
        return case_from_images(case, spec, allow_missing)
    if isinstance(case, Case):
        return case
    found = resolve_cases([case], spec)
    if len(found) != 1:
        raise EmimError(f"{case} holds {len(found)} cases; give one case folder.")
    return found[0]
