"""Which of a model's sequences a case is segmented without, and what the run says of it: a model fine-tuned with
modality dropout takes any subset, `--fill-missing` synthesises the absent ones, any other model refuses the case
(docs/missing-modalities.md)."""

from __future__ import annotations

from collections.abc import Sequence

from emim.data.cases import Case
from emim.data.modalities import ModalitySpec
from emim.errors import EmimError
from emim.inference.case_io import check_modalities
from emim.inference.fill_missing import SYNTHETIC
from emim.inference.reconstruct import Reconstructor


def absent_modalities(case: Case, spec: ModalitySpec, declared: Sequence[str], supported: bool) -> list[str]:
    """The model's modalities this case is to be segmented without: those declared missing (`--missing`) and
    those it has no file for. Refused, naming them and what to do, unless the model was trained for it."""
    unknown = [m for m in declared if m not in spec.names]
    if unknown:
        raise EmimError(f"--missing {', '.join(unknown)}: the model has no such modality; its modalities are "
                        f"{', '.join(spec.names)}.")
    absent = [m for m in spec.names if m in declared or (m not in case.images and m not in case.ambiguous)]
    if absent and not supported:
        why = (" This model was fine-tuned with every sequence present, so it cannot segment without one: use a "
               "model fine-tuned with --modality-dropout (it takes any subset), or synthesise the sequence with "
               "--fill-missing PRETRAINING.")
        check_modalities(case, spec, hint=why)  # no file for it: name the file to add
        raise EmimError(f"case {case.case_id}: --missing {', '.join(absent)}, but the model cannot segment without "
                        f"{', '.join(absent)}.{why} Or leave out --missing.")
    if len(absent) == len(spec.names):
        raise EmimError(f"case {case.case_id}: every modality of the model ({', '.join(spec.names)}) is missing; "
                        "at least one sequence is needed.")
    return absent


def absent_warning(case_id: str, absent: Sequence[str], present: Sequence[str], fill: Reconstructor | None) -> str:
    """What the run says of the sequences a case is segmented without."""
    if fill is not None:
        how = (f"synthesised from {', '.join(present)} by the pretraining {fill.weights.source} (files "
               f"{case_id}{SYNTHETIC}<modality>.nii.gz), and segmented with it.")
    else:
        how = f"the model (fine-tuned with modality dropout) segments it from {', '.join(present)}."
    return f"case {case_id}: no {', '.join(absent)}; {how}"
