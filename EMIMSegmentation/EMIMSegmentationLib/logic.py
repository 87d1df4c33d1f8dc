"""The module's public Python API: segment, reconstruct and classify loaded volumes with an exported model.

Works on MRML only (no Qt), so it runs the same in Slicer's Python console, in batch scripts and in tests on
slicer-core. The engine runs as a child process (`python -m emim ...`); this process never imports torch.

Python console session (inside Slicer)::

    logic = slicer.util.getModuleLogic("EMIMSegmentation")
    inputs = logic.loadCase("/data/BraTS-GLI-00360-000", "/models/emim-brats")   # {"t1n": node, ...}
    segmentation = logic.segment(inputs, "/models/emim-brats", waitForCompletion=True)

`waitForCompletion=False` returns an EngineJob at once; call `job.poll()` regularly (the module's GUI does it
from a timer), `job.cancel()` to stop, and read `job.result` when `job.state == "succeeded"`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import slicer
from EMIMCommonLib.job import EngineJob, run_engine
from EMIMCommonLib.process import engine_command
from emim.contract import DEVICE_CHOICES, LABEL_OUTPUT, MASK_CHOICES, METADATA_FILE, VOLUMES_OUTPUT

from .classification import probabilities_table
from .errors import EMIMSegmentationError
from .geometry import check_untransformed, mismatch_report, resample_to_reference
from .i18n import tr
from .metadata import ModelInfo, missing_cost, read_model_info
from .modalities import assign_modalities, brats_modalities, input_problems
from .reconstruction_import import import_reconstruction_outputs
from .segmentation_import import import_label_file
from .synthetic_import import import_synthetic_volumes
from .training_case import add_training_case
from .volumes_io import load_case_folder, write_volume
from .volumes_table import volumes_table

# The panel's "faster" choice: 12 instead of 27 96^3 windows over a BraTS brain (base on 2 CPU cores: 22 s, not 50 s)
FAST_OVERLAP = 0.25
Log = Callable[[str], None]
Progress = Callable[[float], None]


class SegmentationLogic:
    """Everything the GUI does, as plain methods; `slicer.mrmlScene` is the scene they work on.

    `engineCommand(subcommand, arguments)` gives the command line of an engine run; a test may replace it with
    another program that speaks the same JSON events."""

    engineCommand = staticmethod(engine_command)

    def readModel(self, model: str | Path | ModelInfo) -> ModelInfo:
        return model if isinstance(model, ModelInfo) else read_model_info(self.modelFolder(model))

    def bundledModels(self) -> list[Path]:
        """The models shipped with the extension, the starter model first (the panel offers them first)."""
        from emim.bundled import bundled_models

        return bundled_models()

    def defaultModelPath(self) -> str:
        """The first shipped model's name (the starter model), the panel's choice until the user picks another;
        "" when none is shipped."""
        models = self.bundledModels()
        return models[0].name if models else ""

    def modelFolder(self, model: str | Path) -> Path:
        """A model folder, or a shipped model's name (as the engine CLI takes it) -> its folder."""
        from emim.bundled import resolve_model

        return resolve_model(model)

    def loadCase(self, folder: str | Path, model: str | Path | ModelInfo | None = None) -> dict:
        """Load a case folder's modality files (BraTS names, or the model's patterns) as volumes."""
        modalities = self.readModel(model).modalities if model is not None else brats_modalities()
        return load_case_folder(folder, modalities)

    def autoAssignInputs(self, model: str | Path | ModelInfo, nodes=None) -> dict:
        """{modality: node or None} chosen from volume names (all scalar volumes of the scene by default)."""
        info = self.readModel(model)
        if nodes is None:
            nodes = [n for n in _nodes_of_class("vtkMRMLScalarVolumeNode") if not n.IsA("vtkMRMLLabelMapVolumeNode")]
        by_name = {node.GetName(): node for node in nodes}
        assignment = assign_modalities(list(by_name), info.modalities)
        return {modality: by_name.get(name) if name else None for modality, name in assignment.chosen.items()}

    def inputProblems(self, inputs: dict, model: str | Path | ModelInfo, fillMissing: bool = False) -> list[str]:
        """Why Apply must stay disabled (missing or duplicated inputs); empty when all is well. `fillMissing`: a
        pretraining will synthesise missing sequences, so a segmentation model takes inputs left empty."""
        info = self.readModel(model)
        takes_missing = _takes_missing(info, fillMissing)
        problems = input_problems(inputs, info.modalities, takes_missing)
        empty = [m for m in info.modalities if inputs.get(m.name) is None]
        if info.task == "segmentation" and not takes_missing and 0 < len(empty) < len(info.modalities):
            from emim.bundled import STARTER_PRETRAINING

            problems.append(tr("Without that sequence: choose a pretraining under 'Fill missing with' to synthesise "
                               "it (the extension ships {pretraining}), or a model fine-tuned with modality "
                               "dropout.").format(pretraining=STARTER_PRETRAINING))
        return problems

    def missingSummary(self, inputs: dict, model: str | Path | ModelInfo, fillMissing: str | None = None) -> str:
        """What the panel says when inputs are left empty: which, what the model will do, and the Dice cost
        measured for this model (`missing_cost`), or where to read about it."""
        info = self.readModel(model)
        empty = [m for m in info.modalities if inputs.get(m.name) is None]
        if not empty:
            return ""
        titles = ", ".join(m.title for m in empty)
        if fillMissing:
            action = tr("Missing: {missing}. A stand-in is synthesised by the pretraining {source} and shown as a "
                        "volume named (synthetic, E-MIM); the model segments with it.").format(
                missing=titles, source=Path(fillMissing).name)
        else:
            action = tr("Missing: {missing}. The model (fine-tuned with modality dropout) segments without it.").format(
                missing=titles)
        return action + " " + missing_cost(info, [m.name for m in empty], "fill" if fillMissing else "drop",
                                           Path(fillMissing).name if fillMissing else None)

    def geometryMismatches(self, inputs: dict, model: str | Path | ModelInfo) -> list[str]:
        """Sentences describing every input whose grid differs from the reference (the first modality given); inputs
        left empty are not compared (whether they may be empty is `inputProblems`' question)."""
        info = self.readModel(model)
        given = {m.name: inputs[m.name] for m in info.modalities if inputs.get(m.name) is not None}
        return mismatch_report(given, {m.name: m.title for m in info.modalities})

    def addTrainingCase(self, inputs: dict, segmentation, model: str | Path | ModelInfo, folder: str | Path,
                        caseName: str) -> Path:
        """Write the inputs and the (corrected) segmentation as FOLDER/caseName, a labelled case the engine's
        fine-tuning reads (`emim finetune FOLDER --init MODEL`); never overwrites a case."""
        return add_training_case(inputs, segmentation, self.readModel(model), folder, caseName)

    def resampleInputs(self, inputs: dict, model: str | Path | ModelInfo) -> dict:
        """Inputs with every mismatched volume replaced by a new node resampled onto the reference grid."""
        info = self.readModel(model)
        ordered = self._ordered(inputs, info)
        names = list(ordered)
        reference = ordered[names[0]]
        result = {names[0]: reference}
        for name in names[1:]:
            node = ordered[name]
            single = mismatch_report({names[0]: reference, name: node}, {})
            result[name] = resample_to_reference(node, reference) if single else node
        return result

    def segment(self, inputs: dict, model: str | Path | ModelInfo, outputSegmentation=None, device: str = "auto",
                resample: bool = False, overlap: float | None = None, show3D: bool = False,
                nativeSpacing: bool = False, fillMissing: str | Path | None = None, waitForCompletion: bool = True,
                logCallback: Log | None = None, progressCallback: Progress | None = None, finishCallback=None):
        """Segment `inputs` ({modality: volume node}); returns the segmentation node, or an EngineJob.

        The tumour volumes (mL and lesions per region and label) come as a table node in the same study, referenced
        from the segmentation as `volumes_table.VOLUMES_REFERENCE`.

        The reference geometry is the first given modality's volume. Mismatched grids are refused with a description,
        unless `resample` is True (physical-space resampling onto the reference, new nodes, inputs untouched).
        `outputSegmentation` is replaced in place; by default a new node is created in the input's study.
        A case far from the model's training spacing runs at that spacing and comes back onto the input's grid,
        unless `nativeSpacing`. A model fine-tuned with modality dropout (`ModelInfo.takesMissing`) takes inputs
        with some modalities left out or None; the engine is told which are missing. With `fillMissing` (a pretraining
        model or run folder) any segmentation model takes such inputs: the engine synthesises each missing sequence,
        and the stand-ins come into the scene as volumes named "(synthetic, E-MIM)", referenced from the segmentation
        as `synthetic_import.SYNTHETIC_REFERENCE`.
        """
        info = self._checked(model, "segmentation")
        if fillMissing is not None and all(inputs.get(m.name) is not None for m in info.modalities):
            fillMissing = None  # nothing to fill: a path left in the panel must not stop a complete case
        if fillMissing is not None:
            fillMissing = self.modelFolder(fillMissing)  # a shipped pretraining's name, as the engine takes it
            if (fillMissing / METADATA_FILE).is_file():  # else a run folder or checkpoint, checked by the engine
                self._checked(fillMissing, "pretraining")
        ordered = self._prepared(inputs, info, resample, allowMissing=fillMissing is not None)
        reference = next(iter(ordered.values()))  # the first modality given (a model with dropout takes a subset)
        workdir = Path(tempfile.mkdtemp(prefix="emim-segment-"))
        arguments = ["--model", str(info.folder), "--output", str(workdir / "segmentation.nii.gz"),
                     "--device", _device(device)]
        if overlap is not None:
            arguments += ["--overlap", str(overlap)]
        if nativeSpacing:
            arguments.append("--native-spacing")
        for modality, node in ordered.items():
            arguments += ["--image", f"{modality}={write_volume(node, workdir / f'{modality}.nii.gz')}"]
        for modality in info.modalities:
            if modality.name not in ordered:
                arguments += ["--missing", modality.name]
        if fillMissing is not None:
            arguments += ["--fill-missing", str(fillMissing)]

        def finish(outputs: list[dict], done: dict):
            labels = [o for o in outputs if o.get("kind") == LABEL_OUTPUT]
            path = Path(labels[-1]["path"]) if labels else workdir / "segmentation.nii.gz"
            if not path.is_file():
                raise EMIMSegmentationError(tr("The engine finished but wrote no label file; see the log."))
            segmentation = import_label_file(path, reference, info.labels, segmentation=outputSegmentation,
                                             name=f"{reference.GetName()} {info.name}", show3d=show3D)
            volumes = [o for o in outputs if o.get("kind") == VOLUMES_OUTPUT]
            if volumes and Path(volumes[-1]["path"]).is_file():
                volumes_table(Path(volumes[-1]["path"]), segmentation, slicer.mrmlScene)
            import_synthetic_volumes(outputs, reference, segmentation, str(fillMissing))
            return segmentation

        return self._run("segment", arguments, workdir, finish, waitForCompletion, logCallback, progressCallback,
                         finishCallback)

    def reconstruct(self, inputs: dict, model: str | Path | ModelInfo, mask: str = "hybrid", seed: int = 0,
                    device: str = "auto", resample: bool = False, waitForCompletion: bool = True,
                    logCallback: Log | None = None, progressCallback: Progress | None = None, finishCallback=None):
        """Mask the inputs with a pretraining model and reconstruct them; returns the loaded volumes (dict)."""
        if mask not in MASK_CHOICES:
            raise EMIMSegmentationError(tr("Mask pattern must be one of {choices}.").format(
                choices=", ".join(MASK_CHOICES)))
        info = self._checked(model, "pretraining")
        ordered = self._prepared(inputs, info, resample)
        reference = ordered[info.modalities[0].name]
        workdir = Path(tempfile.mkdtemp(prefix="emim-reconstruct-"))
        case = self._write_case(ordered, workdir / "case")
        arguments = ["--model", str(info.folder), "--mask", mask, "--seed", str(int(seed)),
                     "--output", str(workdir / "out"), "--device", _device(device), str(case)]

        def finish(outputs: list[dict], done: dict):
            return import_reconstruction_outputs(outputs, reference, f"{reference.GetName()} {mask} seed {seed}")

        return self._run("reconstruct", arguments, workdir, finish, waitForCompletion, logCallback, progressCallback,
                         finishCallback)

    def classify(self, inputs: dict, model: str | Path | ModelInfo, outputTable=None, device: str = "auto",
                 resample: bool = False, waitForCompletion: bool = True, logCallback: Log | None = None,
                 progressCallback: Progress | None = None, finishCallback=None):
        """Class probabilities of one case, as a table node (one row per class, most likely first)."""
        info = self._checked(model, "classification")
        ordered = self._prepared(inputs, info, resample)
        workdir = Path(tempfile.mkdtemp(prefix="emim-classify-"))
        case = self._write_case(ordered, workdir / "case")
        arguments = ["--model", str(info.folder), "--device", _device(device), str(case)]

        def finish(outputs: list[dict], done: dict):
            return probabilities_table(done.get("probabilities", {}), slicer.mrmlScene, outputTable)

        return self._run("classify", arguments, workdir, finish, waitForCompletion, logCallback, progressCallback,
                         finishCallback)

    # -- helpers -------------------------------------------------------------------------------------------------

    def _checked(self, model, task: str) -> ModelInfo:
        info = self.readModel(model)
        if info.task != task:
            raise EMIMSegmentationError(tr("Model '{name}' is a {task} model; choose a {wanted} model for this.")
                                        .format(name=info.name, task=info.task, wanted=task))
        return info

    def _ordered(self, inputs: dict, info: ModelInfo, allowMissing: bool = False) -> dict:
        """Inputs in model order, some left out where `_takes_missing`."""
        problems = input_problems(inputs, info.modalities, _takes_missing(info, allowMissing))
        if problems:
            raise EMIMSegmentationError(" ".join(problems))
        return {m.name: inputs[m.name] for m in info.modalities if inputs.get(m.name) is not None}

    def _prepared(self, inputs: dict, info: ModelInfo, resample: bool, allowMissing: bool = False) -> dict:
        """Inputs in model order, checked for transforms and grids; resampled copies when asked."""
        ordered = self._ordered(inputs, info, allowMissing)
        for node in ordered.values():
            check_untransformed(node)
        report = mismatch_report(ordered, {m.name: m.title for m in info.modalities})
        if report and not resample:
            raise EMIMSegmentationError(" ".join(report) + " " + tr("Resample the inputs onto the reference "
                                                                   "(physical space) or load matching volumes."))
        return self.resampleInputs(ordered, info) if report else ordered

    def _write_case(self, ordered: dict, folder: Path) -> Path:
        """Inputs as <modality>.nii.gz in one folder: the engine's case-folder input."""
        folder.mkdir(parents=True)
        for modality, node in ordered.items():
            write_volume(node, folder / f"{modality}.nii.gz")
        return folder

    def _run(self, subcommand: str, arguments: list[str], workdir: Path, finish, waitForCompletion: bool,
             logCallback, progressCallback, finishCallback, keep_workdir: bool = False):
        job = run_engine(self.engineCommand(subcommand, arguments), lambda process: EngineJob(
            process, workdir, finish, log=logCallback, progress=progressCallback, done=finishCallback,
            keep_workdir=keep_workdir, error_type=EMIMSegmentationError), waitForCompletion, logCallback)
        return job.result if waitForCompletion else job


def _takes_missing(info: ModelInfo, filled: bool) -> bool:
    """A segmentation model fine-tuned with modality dropout, or any one whose missing inputs are synthesised."""
    return (info.takesMissing or filled) and info.task == "segmentation"


def _device(device: str) -> str:
    if device not in DEVICE_CHOICES:
        raise EMIMSegmentationError(tr("Device must be one of {choices}.").format(choices=", ".join(DEVICE_CHOICES)))
    return device


def _nodes_of_class(class_name: str) -> list:
    scene = slicer.mrmlScene
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]
