"""What the engine and its clients (the Slicer modules, scripts) must agree on, defined once: option choices, the
names of run- and model-folder files, the progress events.

Standard library only, and nothing else of the engine is imported, so a client that must not load torch (a Slicer
module at start-up) can import it. The engine's argument parsers and readers take their values from here.
"""

DEVICE_CHOICES = ("auto", "cuda", "cpu")  # or cuda:N
BRATS_MODALITIES = ("t1n", "t1c", "t2w", "t2f")  # BraTS 2023 sequence names, in the order the shipped models take them
PRESET_NAMES = ("tiny", "small", "base")
DEFAULT_PRESET = PRESET_NAMES[0]  # trains on a laptop CPU; `--preset` and the panel start from it
MASK_PATTERNS = ("patch", "position", "modal")  # E-MIM's three masks, in the order of --hybrid-probs
HYBRID = "hybrid"  # each sample draws one of the three
MASK_CHOICES = (HYBRID, *MASK_PATTERNS)
STARTER_MODEL = "EMIM-starter-tiny"  # the shipped segmentation model: listed first, the Slicer panel's default
STARTER_PRETRAINING = "EMIM-starter-tiny-pretraining"  # the shipped pretraining the starter models came from
OUTPUT_FORMATS = ("nifti", "dicom-seg")  # emim segment --output-format
MODEL_TASKS = ("segmentation", "classification", "pretraining")  # `task` of a model folder's metadata
PRETRAIN, FINETUNE, FINETUNE_CLASSIFIER = "pretrain", "finetune", "finetune-classifier"
TRAINING_COMMANDS = (PRETRAIN, FINETUNE, FINETUNE_CLASSIFIER)  # also `command` in a run's config.json
PROGRESS_MODES = ("bar", "json", "none")
NORMALIZATIONS = ("zscore-nonzero", "zscore", "max", "none")  # per-modality intensity normalisation (--normalization)
DEFAULT_NORMALIZATION = NORMALIZATIONS[0]  # z-scores over the non-zero (brain) voxels, as MONAI's nonzero=True

# Defaults both sides start a run with: the engine's parsers and configs, the Slicer panel and batch script
PATCH_RATIO = 0.5  # share of each view's patches the patch mask hides
POSITION_RATIO = 0.4  # share of positions the position mask hides in every modality
PBT_LEVELS = 4  # pyramid Barlow Twins levels (0 = plain masked image modelling)
PBT_WEIGHT = 0.1  # weight of the PBT loss beside the reconstruction loss
LOG_EVERY = 5  # steps between training log lines and metrics records
VAL_FRACTION = 0.2  # classification fine-tuning: share of the cases held out for validation

# A run folder
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
CASES_FILE = "cases.json"  # fine-tuning: training and validation case ids, median spacing
CHECKPOINT_FOLDER = "checkpoints"
LAST_CHECKPOINT = f"{CHECKPOINT_FOLDER}/last.pt"
RUN_WARNING = "WARNING step {step}: {message}"  # how a training warning is written in the log file

# A model folder
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
# metadata provenance key: the Dice measured without each sequence (bench/missing_modality.py), shown by the panel:
# {"cases": str, "all": {region: Dice}, "drop" and/or "fill": {modality: {region: Dice}}, "fill_pretraining": str}
MISSING_DICE = "missing_sequence_dice"

# Progress events (`--progress json`): one JSON object per line with "event" set to one of these
EVENTS = ("start", "progress", "metrics", "warning", "checkpoint", "cache", "output", "done", "error")
# `kind` of an `output` event: which file it is
LABEL_OUTPUT, VOLUMES_OUTPUT, REPORT_OUTPUT = "label", "volumes", "report"  # emim segment, per case
SYNTHETIC_OUTPUT, PROBABILITY_OUTPUT = "synthetic", "probability"  # segment --fill-missing / --save-probabilities
RECONSTRUCTION_OUTPUTS = ("masked", "reconstruction", "mask")  # emim reconstruct, per modality
MASK_OUTPUT = RECONSTRUCTION_OUTPUTS[2]  # the hybrid mask: a label map, not an image
MODEL_OUTPUT, CASE_OUTPUT = "model", "case"  # an exported model folder; a generated sample case
# `kind` of a metrics.jsonl record and of a `metrics` event
TRAIN_RECORD, EVAL_RECORD = "train", "eval"

# names that become part of a file name (case ids, region names, added training cases): no separators, no dot first
SAFE_NAME_RULE = "1-128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit"


def name_problem(name: object) -> str | None:
    """Why `name` cannot be part of a file name (SAFE_NAME_RULE, ASCII only), or None when it can."""
    plain = isinstance(name, str) and 1 <= len(name) <= 128 and name.isascii() and name[0].isalnum() and all(
        c.isalnum() or c in "._+-" for c in name)
    return None if plain else f"{name!r} is not a plain name ({SAFE_NAME_RULE})"
