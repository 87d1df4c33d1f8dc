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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emim.contract import (LABEL_OUTPUT, OUTPUT_FORMATS, PROBABILITY_OUTPUT, REPORT_OUTPUT, SYNTHETIC_OUTPUT,
                           VOLUMES_OUTPUT)
from emim.data.cases import Case
from emim.data.loading import LoadedCase, load_case
from emim.errors import EmimError
from emim.inference.absent import absent_modalities, absent_warning
from emim.inference.case_io import NIFTI, check_case_outputs, write_case_outputs
from emim.inference.dicom_seg import SEG_SUFFIX, dicom_seg_bytes
from emim.inference.fill_missing import SYNTHETIC, check_filler, synthesise
from emim.inference.postprocess import PostProcess, label_map
from emim.inference.prediction import predict_probabilities
from emim.inference.reconstruct import Reconstructor
from emim.report import REPORT, RunReport
from emim.inference.segmentation_model import SegmentationModel
from emim.data.spacing import mm_text, needs_resampling, rescale
from emim.progress import Progress
from emim.volumes import region_volumes, structure_volumes, voxel_volume_mm3, volumes_csv

VOLUMES = ".volumes.csv"


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


@dataclass(frozen=True)
class SegmentOptions:
    """How `segment_case` segments, beyond what the model records (the options of `emim segment`)."""

    overlap: float | None = None  # sliding-window overlap; None: the model's
    sw_batch_size: int | None = None  # windows per forward pass; None: the model's
    probabilities: bool = False  # also write each region's probability map (float32)
    resample: bool = False  # resample sequences on another grid onto the first one (physical space)
    native_spacing: bool = False  # run on the case's own voxel size, not the model's training spacing
    postprocess: PostProcess | None = None  # label-map cleaning; None: the model's (postprocess.NONE: keep all)
    missing: Sequence[str] = ()  # sequences to leave out (a dropout model, or `fill`)
    fill: Reconstructor | None = None  # a pretraining that synthesises absent sequences (see `fill_missing`)
    output_format: str = "nifti"  # or "dicom-seg" (DICOM input only)


def segment_case(model: SegmentationModel, case: Case, output: str | Path, options: SegmentOptions = SegmentOptions(),
                 progress: Progress | None = None, single: bool = True,
                 on_windows: Callable[[int, int], None] | None = None) -> dict[str, Path]:
    """Segment one case with a loaded model; returns what it wrote, keyed as `output_paths` names the files
    ("label", "volumes", "report", ...; `single`: OUT may name the label file itself).

    The label map is uint8 with the model's label values on the reference modality's exact grid. A case far from
    the model's training spacing runs at the model's spacing and comes back (see `spacing`), unless
    `native_spacing`. Labels and probabilities are zero outside the case's brain. A model fine-tuned with modality
    dropout segments a case without the modalities in `missing` or without a file (said in a warning, the output
    event and the report); any other model refuses such a case, unless `fill` synthesises the absent ones, which are
    then written beside the label map. `emim.data.case_inputs.one_case` makes a `Case` of a folder or of
    {modality: file}.
    """
    progress = progress or Progress("none")
    fill, output_format = options.fill, options.output_format
    spec = model.spec
    case.check_usable()
    absent = absent_modalities(case, spec, options.missing, model.takes_missing or fill is not None)
    present = [m for m in spec.names if m not in absent]
    filled = list(absent) if fill is not None else []
    if filled:
        check_filler(fill, spec, model.normalization)
    names = [r["name"] for r in model.regions]
    folder, paths = _output_plan(Path(output), case, names, single, filled, output_format, present[0])
    report = RunReport("segment", model.metadata, model.folder, str(model.device))
    loaded = _load_inputs(model, case, present, absent, options, report, progress)
    ran_at = _run_spacing(model, loaded, options.native_spacing, report, progress)
    overlap, sw_batch_size = _window_settings(model, options.overlap, options.sw_batch_size)
    with report.stage("inference"):
        probs, synthetic = _infer(model, loaded, ran_at, overlap, sw_batch_size, on_windows,
                                  present if absent and not filled else None, fill, filled, report)
    settings = model.postprocess if options.postprocess is None else options.postprocess
    with report.stage("postprocess"):
        probs *= loaded.inside[None]
        labels = label_map(probs, loaded.inside, loaded.spacing, model.regions, settings)
        volumes = structure_volumes(case.case_id, labels, voxel_volume_mm3(loaded.affine), model.metadata["labels"],
                                    model.regions)
    files: dict[Path, Any] = {paths["volumes"]: volumes_csv(volumes), paths["label"]: _label_file(
        loaded, labels, output_format, case.dicom.get(present[0]), model.metadata, report)}
    if options.probabilities:
        files.update({paths[f"prob_{n}"]: (loaded, probs[i], np.float32) for i, n in enumerate(names)})
    files.update({paths[f"synthetic_{m}"]: (loaded, synthetic[i] * loaded.inside, np.float32)
                  for i, m in enumerate(filled)})
    files[paths["report"]] = report.text(case.case_id, {m: case.images[m] for m in present}, {
        "missing_modalities": absent, "filled_by": fill.description() if filled else None,
        "overlap": overlap, "sw_batch_size": sw_batch_size, "postprocess": settings.to_metadata(),
        "case_spacing_mm": list(loaded.spacing), "ran_at_mm": list(ran_at or loaded.spacing),
        "normalization": model.normalization, "resample": options.resample, "output_format": output_format},
        list(files), case.dicom)
    write_case_outputs(files, folder, case)
    progress.event("output", path=str(paths["label"]), kind=LABEL_OUTPUT, case=case.case_id, format=output_format,
                   postprocess=settings.to_metadata(), missing=absent,
                   **({"ran_at": mm_text(ran_at), "case_spacing": mm_text(loaded.spacing)} if ran_at else {}))
    _announce_others(progress, paths, case.case_id, volumes, filled, model.normalization,
                     names if options.probabilities else [])
    return {key: path for key, path in paths.items() if path in files}


def _load_inputs(model: SegmentationModel, case: Case, present: Sequence[str], absent: Sequence[str],
                 options: SegmentOptions, report: RunReport, progress: Progress) -> LoadedCase:
    """The present sequences as the model was trained on them, with a zero channel (and a warning) for each absent
    one."""
    with report.stage("load"):
        loaded = load_case(case, present, model.normalization, options.resample, with_label=False)
    if absent:
        names = model.spec.names
        full = np.zeros((len(names), *loaded.image.shape[1:]), dtype=np.float32)
        full[[names.index(m) for m in present]] = loaded.image
        loaded.image = full
        report.warnings.append(absent_warning(case.case_id, absent, present, options.fill))
        progress.event("warning", case=case.case_id, missing=absent, message=report.warnings[-1])
    return loaded


def _run_spacing(model: SegmentationModel, loaded: LoadedCase, native_spacing: bool, report: RunReport,
                 progress: Progress) -> Sequence[float] | None:
    """The model's training spacing when the case is far from it (the case runs there and comes back to its own
    grid), else None; `native_spacing` keeps the case's own, with a warning."""
    trained = (model.metadata.get("preprocessing") or {}).get("spacing")
    if not needs_resampling(loaded.spacing, trained):
        return None
    if not native_spacing:
        return trained
    report.warnings.append(
        f"case {loaded.case_id} has {mm_text(loaded.spacing)} voxels but the model was trained on "
        f"{mm_text(trained)}, and --native-spacing keeps the case's own; expect a worse segmentation. Leave it "
        "out to let the model run at its own spacing (the result is still written on the case's grid).")
    progress.event("warning", case=loaded.case_id, message=report.warnings[-1])
    return None


def _window_settings(model: SegmentationModel, overlap: float | None, sw_batch_size: int | None
                     ) -> tuple[float, int]:
    """The sliding window's overlap and batch: as given, else the model's recorded defaults."""
    overlap = float(model.inference_default("overlap", 0.5) if overlap is None else overlap)
    sw_batch_size = int(model.inference_default("sw_batch_size", 2) if sw_batch_size is None else sw_batch_size)
    if not 0 <= overlap < 1 or sw_batch_size < 1:
        raise EmimError(f"overlap must be in [0, 1) and sw-batch-size at least 1, got {overlap} and {sw_batch_size}")
    return overlap, sw_batch_size


def _label_file(loaded: LoadedCase, labels: np.ndarray, output_format: str, series: Any, metadata: dict[str, Any],
                report: RunReport) -> Any:
    """The label map as `write_case_outputs` takes it: DICOM SEG bytes referencing the reference `series`, or the
    labels to write like the reference NIfTI file."""
    if output_format != "dicom-seg":
        return loaded, labels, np.uint8
    with report.stage("dicom-seg"):
        return dicom_seg_bytes(loaded.to_reference(labels), series, metadata["labels"], str(metadata.get("name")))


def _output_plan(output: Path, case: Case, regions: Sequence[str], single: bool, synthetic: Sequence[str],
                 output_format: str, reference: str) -> tuple[Path, dict[str, Path]]:
    """`output_paths` with the label map in the chosen format, every path checked before any inference."""
    folder, paths = output_paths(output, case.case_id, regions, single, synthetic)
    if output_format not in OUTPUT_FORMATS:
        raise EmimError(f"--output-format {output_format}: choose one of {', '.join(OUTPUT_FORMATS)}.")
    if output_format == "dicom-seg":
        if reference not in case.dicom:
            raise EmimError(f"case {case.case_id}: --output-format dicom-seg references the source DICOM series, "
                            "but this case was read from NIfTI files; give the DICOM folder, or use "
                            "--output-format nifti.")
        paths["label"] = paths["dicom_seg"]
    check_case_outputs(paths.values(), folder, case)
    return folder, paths


def _infer(model: SegmentationModel, loaded: LoadedCase, trained: Sequence[float] | None, overlap: float,
           sw_batch_size: int, on_windows: Callable[[int, int], None] | None, present: Sequence[str] | None,
           fill: Reconstructor | None, filled: Sequence[str], report: RunReport) -> tuple[np.ndarray, np.ndarray]:
    """Region probabilities (and the synthesised sequences) on the case's grid: at the `trained` spacing and back
    when it is given; `present`: the modalities a dropout model segments from, when some are absent."""
    names = model.spec.names
    image = rescale(loaded.image, loaded.spacing, trained) if trained else loaded.image
    synthetic = np.zeros((0, *image.shape[1:]), np.float32)
    try:
        if filled:
            with report.stage("synthesis"):
                synthetic = synthesise(fill, image, names, filled, sw_batch_size)
            image[[names.index(m) for m in filled]] = synthetic
        probs = predict_probabilities(model.network, image, model.crop_size, overlap, sw_batch_size, model.device,
                                      on_windows, [names.index(m) for m in present] if present else None)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise EmimError(f"case {loaded.case_id}: the GPU ran out of memory with --sw-batch-size {sw_batch_size}; "
                        "use a smaller --sw-batch-size (1), close other GPU programs, or run with --device cpu.") \
            from None
    if trained:
        shape = loaded.image.shape[1:]
        probs = rescale(probs, trained, loaded.spacing, shape=shape)
        if filled:
            synthetic = rescale(synthetic, trained, loaded.spacing, shape=shape)
    return probs, synthetic


def _announce_others(progress: Progress, paths: dict[str, Path], case_id: str, volumes: list[dict[str, Any]],
                     filled: Sequence[str], units: str, probability_regions: Sequence[str]) -> None:
    """The `output` events of the files beside the label map: volumes, report, synthesised sequences,
    probability maps."""
    progress.event("output", path=str(paths["volumes"]), kind=VOLUMES_OUTPUT, case=case_id,
                   volumes_ml=region_volumes(volumes))
    progress.event("output", path=str(paths["report"]), kind=REPORT_OUTPUT, case=case_id)
    for modality in filled:
        progress.event("output", path=str(paths[f"synthetic_{modality}"]), kind=SYNTHETIC_OUTPUT, case=case_id,
                       modality=modality, units=units)
    for name in probability_regions:
        progress.event("output", path=str(paths[f"prob_{name}"]), kind=PROBABILITY_OUTPUT, case=case_id, region=name)
