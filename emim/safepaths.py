"""Names that become file names, and outputs that must stay where the user asked and never replace an input.

Region and modality names come from a model's metadata.json and case ids from a datalist: files a user was handed,
which no checksum covers. Each becomes part of an output file name, so each must be one plain path component;
and every output path is checked, after resolving links, to lie inside the chosen output folder and to be none
of the inputs, nor inside the case folder they were found in (a label map written there would be read back as
one of the case's images; files given one by one with `--image` have no case folder). An output that is itself a
link is refused, and outputs are written only by `atomic_write`, which never follows one.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from emim.atomic_write import check_not_link
from emim.contract import name_problem
from emim.errors import EmimError


def check_safe_name(name: object, what: str, fix: str) -> str:
    """`name` itself, or an EmimError that says which `what` it is and how to fix it."""
    problem = name_problem(name)
    if problem:
        raise EmimError(f"{what}: {problem}; it is used in output file names. {fix}")
    return name  # type: ignore[return-value]


def check_outputs(outputs: Iterable[Path], root: Path, inputs: Iterable[Path], case_folder: Path | None,
                  input_tree: Path | None = None) -> None:
    """Refuse before anything is written: an output that is a symbolic link (`atomic_write`), one outside `root`,
    one that is an input, one written into the case folder the inputs were found in, or one anywhere under
    `input_tree` (a DICOM folder, which is searched with its subfolders: NIfTI files left there would be read back
    instead of the series)."""
    base = root.resolve()
    sources = {Path(p).resolve() for p in inputs}
    folder = case_folder.resolve() if case_folder is not None else None
    tree = input_tree.resolve() if input_tree is not None else None
    for output in outputs:
        check_not_link(output)  # resolving it would name wherever it points, not the link that is the problem
        target = output.resolve()
        if tree is not None and tree in target.parents:
            raise EmimError(f"output {output} would be written inside the DICOM folder {input_tree}, which is "
                            "searched with all its subfolders; refusing (the next run would read it instead of the "
                            "series). Choose an --output outside the DICOM folder.")
        if target != base and base not in target.parents:
            raise EmimError(f"output {output} would be written outside the output folder {root}; refusing. "
                            "This comes from a name in the model or data list: check it.")
        if target in sources:
            raise EmimError(f"output {output} is one of the input files; refusing to overwrite it. "
                            "Choose an --output outside the case folders.")
        if target.parent == folder:
            raise EmimError(f"output {output} would be written into the case folder {case_folder}, which holds "
                            "input images of this case; refusing (it would be read back as one of them). Choose an "
                            "--output outside the case folders.")


def check_output_folder(output: Path, case_folders: Iterable[Path | None], data_folders: Iterable[Path]) -> None:
    """Refuse, before the first case, an output folder that is or lies in one of the batch's case folders, or that is
    a folder the cases were found in: the other cases' outputs would land among a case's images (which is then
    refused as ambiguous on every later run), or the next run would read the outputs as a case of their own."""
    target = output.resolve()
    for folder in filter(None, case_folders):
        case = folder.resolve()
        if target == case or case in target.parents:
            raise EmimError(f"--output {output} is inside the case folder {folder}, which holds input images; "
                            "refusing (the outputs would be read back as that case's images). Choose an --output "
                            "outside the case folders.")
    for folder in data_folders:
        if folder.is_dir() and target == folder.resolve():
            raise EmimError(f"--output {output} is the folder the cases are read from; refusing (the next run would "
                            "read the outputs as a case). Choose an --output outside it, e.g. a folder beside it.")
