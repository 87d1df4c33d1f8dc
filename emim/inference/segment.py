"""Segment cases with an exported segmentation model, writing label maps on exactly the input's grid.

Pipeline per case: `load_case` (canonical RAS voxel order, the model's normalisation) -> the model's training
spacing where the case is far from it (`spacing`) -> crop to the brain's bounding box (all-zero background cannot
hold tumour, and skipping it halves the windows on BraTS) -> MONAI sliding-window inference with Gaussian blending
(bf16 autocast on CUDA) -> sigmoid -> back to the case's spacing -> zero outside the case's non-zero voxels and
clean (`postprocess`: nested regions, no small lesions) -> label map -> `image_like_reference`, which restores the
reference file's voxel order, affine and header. Every file of a case is written into a new temporary (never through
a planted link: `atomic_write`) and renamed only when all of them are complete, so a failure leaves nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emim.contract import OUTPUT_FORMATS
from emim.data.cases import Case, without_suffix, find_cases, is_nifti
from emim.data.loading import load_case
from emim.data.modalities import ModalitySpec, strip_extension
from emim.errors import EmimError
from emim.model.unetr import EMIMUNETR
from emim.inference.case_io import NIFTI, check_case_outputs, check_modalities, write_case_outputs
from emim.inference.dicom_seg import SEG_SUFFIX, dicom_seg_bytes
from emim.inference.fill_missing import SYNTHETIC, check_filler, synthesise
from emim.inference.postprocess import PostProcess, label_map
from emim.inference.reconstruct import Reconstructor
from emim.inference.report import REPORT, RunReport
from emim.inference.spacing import mm_text, needs_resampling, rescale
from emim.progress import Progress
from emim.train.device import autocast
from emim.volumes import region_volumes, structure_volumes, voxel_volume_mm3, volumes_csv

VOLUMES = ".volumes.csv"


@dataclass
class SegmentationModel:
    """An exported segmentation model, loaded once and reused for every case of a batch."""

    network: EMIMUNETR
    metadata: dict[str, Any]
    device: torch.device
    folder: Path | None = None

    @property
    def spec(self) -> ModalitySpec:
        return ModalitySpec.from_metadata(self.metadata["modalities"])

    @property
    def regions(self) -> list[dict[str, Any]]:
        return self.metadata["regions"]

    @property
    def crop_size(self) -> tuple[int, int, int]:
        return self.network.config.crop_size

    @property
    def normalization(self) -> str:
        return (self.metadata.get("preprocessing") or {}).get("normalization", "zscore-nonzero")

    def inference_default(self, key: str, fallback: Any) -> Any:
        return (self.metadata.get("inference") or {}).get(key, fallback)

    @property
    def takes_missing(self) -> bool:
        """Fine-tuned with modality dropout: segments a case that lacks some of its modalities."""
        return bool((self.inference_default("missing_modalities", None) or {}).get("supported"))

    @property
    def postprocess(self) -> PostProcess:
        return PostProcess.from_metadata(self.inference_default("postprocess", None))


def build_network(model_config: dict[str, Any], network: dict[str, Any], out_channels: int) -> EMIMUNETR:
    """The UNETR described by a model folder's `model_config` and `network` metadata."""
    from emim.config import ModelConfig

    return EMIMUNETR(ModelConfig.from_dict(model_config), out_channels, int(network.get("feature_size", 16)))


def load_segmentation_model(model_dir: str | Path, device: str = "auto",
                            warn: Callable[[str], None] | None = None) -> SegmentationModel:
    """Read and check a model folder (never unpickling) and put its network on the resolved device."""
    from emim.inference.model_folder import load_network
    from emim.modelfile import model_folder

    network, metadata, resolved = load_network(
        model_dir, "segmentation",
        lambda meta: build_network(meta["model_config"], meta.get("network") or {}, len(meta["regions"])),
        "export a fine-tuning run with `emim export RUN --out MODEL`", device, warn)
    return SegmentationModel(network, metadata, resolved, model_folder(model_dir))


def count_windows(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """How many windows MONAI's sliding window visits (after padding the volume up to the window size)."""
    total = 1
    for size, window in zip(shape, roi):
        size = max(size, window)
        step = max(int(window * (1 - overlap)), 1)
        total *= 1 if size == window else math.ceil((size - window) / step) + 1
    return total


def predict_probabilities(network: torch.nn.Module, image: np.ndarray, roi: Sequence[int], overlap: float,
                          sw_batch_size: int, device: torch.device,
                          on_windows: Callable[[int, int], None] | None = None,
                          present: Sequence[int] | None = None) -> np.ndarray:
    """(M, X, Y, Z) normalised canonical image -> (C, X, Y, Z) float32 region probabilities.

    `on_windows(done, total)` is called after each window batch (progress reporting). `present`: the modalities
    the case has, when it misses some (their channels are zeros; see EMIMUNETR.forward).
    """
    from monai.inferers import sliding_window_inference

    from emim.data.brainbox import brain_bounds

    box = brain_bounds(image)
    crop = torch.from_numpy(np.ascontiguousarray(image[(slice(None), *box)]))[None].to(device)
    total = count_windows(crop.shape[2:], roi, overlap)
    done = 0

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        nonlocal done
        with autocast(device):
            logits = network(windows) if present is None else network(windows, present=list(present))
        done += windows.shape[0]
        if on_windows is not None:
            on_windows(min(done, total), total)
        return logits.float()

    with torch.inference_mode():
        logits = sliding_window_inference(crop, tuple(roi), sw_batch_size, predictor, overlap=overlap,
                                          mode="gaussian")
        probabilities = torch.sigmoid(logits[0]).float().cpu().numpy()
    full = np.zeros((probabilities.shape[0], *image.shape[1:]), dtype=np.float32)
    full[(slice(None), *box)] = probabilities
    return full


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


def output_paths(output: Path, case_id: str, regions: Sequence[str], single: bool,
                 synthetic: Sequence[str] = ()) -> tuple[Path, dict[str, Path]]:
    """The output folder, and 'label', 'dicom_seg', 'volumes', 'report', 'prob_<region>' and
    'synthetic_<modality>' -> final paths: OUT itself for one case and OUT ending .nii.gz (the others beside it,
    e.g. OUT-stem.volumes.csv), else OUT/<case>...."""
    if single and output.name.lower().endswith(NIFTI):
        folder, stem = output.parent, output.name[: -len(NIFTI)]
    else:
        folder, stem = output, case_id
    paths = {"label": folder / f"{stem}{NIFTI}", "volumes": folder / f"{stem}{VOLUMES}",
             "report": folder / f"{stem}{REPORT}", "dicom_seg": folder / f"{stem}{SEG_SUFFIX}"}
    paths.update({f"prob_{r}": folder / f"{stem}_prob_{r}{NIFTI}" for r in regions})
    paths.update({f"synthetic_{m}": folder / f"{stem}{SYNTHETIC}{m}{NIFTI}" for m in synthetic})
    return folder, paths


def segment_case(model: SegmentationModel | str | Path, case: Case | str | Path | dict[str, str | Path],
                 output: str | Path, overlap: float | None = None, sw_batch_size: int | None = None,
                 probabilities: bool = False, resample: bool = False, device: str = "auto",
                 progress: Progress | None = None, single: bool = True,
                 on_windows: Callable[[int, int], None] | None = None, native_spacing: bool = False,
                 postprocess: PostProcess | None = None, missing: Sequence[str] = (),
                 fill: Reconstructor | None = None, output_format: str = "nifti") -> Path:
    """Segment one case and return the label map's path (see `output_paths` for where files go).

    `model` is a model folder or a `SegmentationModel` (load it once for a batch); `case` a `Case`, a case
    folder, or {modality: file}. The label map is uint8 with the model's label values on the reference
    modality's exact grid; with `probabilities` each region's probability map is written too (float32).
    A case far from the model's training spacing runs at the model's spacing and comes back (see `spacing`),
    unless `native_spacing`. Labels and probabilities are zero outside the case's brain; the label map is cleaned
    with `postprocess` (default: the model's settings; `postprocess.NONE` keeps every lesion). A model fine-tuned
    with modality dropout segments a case without the modalities in `missing` or without a file (said in a
    warning, the output event and the report); any other model refuses such a case, unless `fill` (a pretraining,
    see `fill_missing`) synthesises the absent ones, which are then written beside the label map. With
    `output_format` "dicom-seg" (DICOM input only) the label map is a DICOM SEG referencing the reference series.
    """
    progress = progress or Progress("none")
    if not isinstance(model, SegmentationModel):
        model = load_segmentation_model(model, device, lambda m: progress.event("warning", message=m))
    spec = model.spec
    takes_missing = model.takes_missing or fill is not None
    if isinstance(case, dict):
        case = case_from_images(case, spec, takes_missing)
    elif not isinstance(case, Case):
        found = resolve_cases([case], spec)
        if len(found) != 1:
            raise EmimError(f"{case} holds {len(found)} cases; segment_case takes one case folder.")
        case = found[0]
    absent = absent_modalities(case, spec, missing, takes_missing)
    present = [m for m in spec.names if m not in absent]
    filled = list(absent) if fill is not None else []
    if filled:
        check_filler(fill, spec, model.normalization)
    names = [r["name"] for r in model.regions]
    folder, paths = output_paths(Path(output), case.case_id, names, single, filled)
    if output_format not in OUTPUT_FORMATS:
        raise EmimError(f"--output-format {output_format}: choose one of {', '.join(OUTPUT_FORMATS)}.")
    if output_format == "dicom-seg":
        if present[0] not in case.dicom:
            raise EmimError(f"case {case.case_id}: --output-format dicom-seg references the source DICOM series, "
                            "but this case was read from NIfTI files; give the DICOM folder, or use "
                            "--output-format nifti.")
        paths["label"] = paths["dicom_seg"]
    check_case_outputs(paths.values(), folder, case)  # before the inference, not after it
    report = RunReport("segment", model.metadata, model.folder, str(model.device))
    with report.stage("load"):
        loaded = load_case(case, present, model.normalization, resample, with_label=False)
    if absent:
        full = np.zeros((len(spec.names), *loaded.image.shape[1:]), dtype=np.float32)
        full[[spec.names.index(m) for m in present]] = loaded.image
        loaded.image = full
        report.warnings.append(
            f"case {case.case_id}: no {', '.join(absent)}; " + (
                f"synthesised from {', '.join(present)} by the pretraining {fill.weights.source} (files "
                f"{case.case_id}{SYNTHETIC}<modality>.nii.gz), and segmented with it." if filled else
                f"the model (fine-tuned with modality dropout) segments it from {', '.join(present)}."))
        progress.event("warning", case=case.case_id, missing=absent, message=report.warnings[-1])
    trained = (model.metadata.get("preprocessing") or {}).get("spacing")
    rescaled = needs_resampling(loaded.spacing, trained)
    if rescaled and native_spacing:
        rescaled = False
        report.warnings.append(
            f"case {case.case_id} has {mm_text(loaded.spacing)} voxels but the model was trained on "
            f"{mm_text(trained)}, "
            "and --native-spacing keeps the case's own; expect a worse segmentation. Leave it out to let the "
            "model run at its own spacing (the result is still written on the case's grid).")
        progress.event("warning", case=case.case_id, message=report.warnings[-1])
    overlap = float(model.inference_default("overlap", 0.5) if overlap is None else overlap)
    sw_batch_size = int(model.inference_default("sw_batch_size", 2) if sw_batch_size is None else sw_batch_size)
    if not 0 <= overlap < 1 or sw_batch_size < 1:
        raise EmimError(f"overlap must be in [0, 1) and sw-batch-size at least 1, got {overlap} and {sw_batch_size}")
    with report.stage("inference"):
        image = rescale(loaded.image, loaded.spacing, trained) if rescaled else loaded.image
        try:
            if filled:
                with report.stage("synthesis"):
                    synthetic = synthesise(fill, image, spec.names, filled, sw_batch_size)
                image[[spec.names.index(m) for m in filled]] = synthetic
            probs = predict_probabilities(model.network, image, model.crop_size, overlap, sw_batch_size,
                                          model.device, on_windows,
                                          [spec.names.index(m) for m in present] if absent and not filled else None)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise EmimError(f"case {case.case_id}: the GPU ran out of memory with --sw-batch-size "
                            f"{sw_batch_size}; use a smaller --sw-batch-size (1), close other GPU programs, or run "
                            "with --device cpu.") from None
        if rescaled:
            probs = rescale(probs, trained, loaded.spacing, shape=loaded.image.shape[1:])
            if filled:
                synthetic = rescale(synthetic, trained, loaded.spacing, shape=loaded.image.shape[1:])
    settings = model.postprocess if postprocess is None else postprocess
    with report.stage("postprocess"):
        probs *= loaded.inside[None]
        labels = label_map(probs, loaded.inside, loaded.spacing, model.regions, settings)
        volumes = structure_volumes(case.case_id, labels, voxel_volume_mm3(loaded.affine), model.metadata["labels"],
                                    model.regions)
    files: dict[Path, Any] = {paths["volumes"]: volumes_csv(volumes)}
    if output_format == "dicom-seg":
        with report.stage("dicom-seg"):
            files[paths["label"]] = dicom_seg_bytes(loaded.to_reference(labels), case.dicom[present[0]],
                                                    model.metadata["labels"], str(model.metadata.get("name")))
    else:
        files[paths["label"]] = (loaded, labels, np.uint8)
    if probabilities:
        files.update({paths[f"prob_{n}"]: (loaded, probs[i], np.float32) for i, n in enumerate(names)})
    files.update({paths[f"synthetic_{m}"]: (loaded, synthetic[i] * loaded.inside, np.float32)
                  for i, m in enumerate(filled)})
    files[paths["report"]] = report.text(case.case_id, {m: case.images[m] for m in present}, {
        "missing_modalities": absent, "filled_by": fill.description() if filled else None,
        "overlap": overlap, "sw_batch_size": sw_batch_size, "postprocess": settings.to_metadata(),
        "case_spacing_mm": list(loaded.spacing), "ran_at_mm": list(trained) if rescaled else list(loaded.spacing),
        "normalization": model.normalization, "resample": resample, "output_format": output_format}, list(files),
        case.dicom)
    write_case_outputs(files, folder, case)
    progress.event("output", path=str(paths["label"]), kind="label", case=case.case_id, format=output_format,
                   postprocess=settings.to_metadata(), missing=absent,
                   **({"ran_at": mm_text(trained), "case_spacing": mm_text(loaded.spacing)} if rescaled else {}))
    progress.event("output", path=str(paths["volumes"]), kind="volumes", case=case.case_id,
                   volumes_ml=region_volumes(volumes))
    progress.event("output", path=str(paths["report"]), kind="report", case=case.case_id)
    for modality in filled:
        progress.event("output", path=str(paths[f"synthetic_{modality}"]), kind="synthetic", case=case.case_id,
                       modality=modality, units=model.normalization)
    if probabilities:
        for name in names:
            progress.event("output", path=str(paths[f"prob_{name}"]), kind="probability", case=case.case_id,
                           region=name)
    return paths["label"]
