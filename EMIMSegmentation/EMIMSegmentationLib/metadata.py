"""Read an exported model's metadata.json with the json module and the engine's stdlib-only schema check
(`emim.model_metadata`), so Slicer's process never imports torch. The engine checks the same schema, and more (the
weights' hash, name patterns), when it loads the model; here we need what the GUI shows and what the inputs and
outputs are called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from emim.contract import METADATA_FILE, MISSING_DICE

from .errors import EMIMSegmentationError
from .i18n import tr


@dataclass(frozen=True)
class Modality:
    name: str
    title: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class Label:
    value: int
    name: str
    color: tuple[int, int, int]
    terminology: dict | str | None = None


@dataclass(frozen=True)
class ModelInfo:
    folder: Path
    task: str
    name: str
    description: str
    modalities: tuple[Modality, ...]
    labels: tuple[Label, ...] = ()
    classes: tuple[str, ...] = ()
    provenance: dict = field(default_factory=dict)
    takesMissing: bool = False  # fine-tuned with modality dropout: an input may be left empty

    def summary(self) -> str:
        """Two lines a person reads at a glance: what the model is and takes, and what it was trained and scored on."""
        first = f"{self.name}: {self.task}; " + tr("inputs") + " " + ", ".join(m.title for m in self.modalities)
        if self.labels:
            first += "; " + tr("labels") + " " + ", ".join(lb.name for lb in self.labels)
        if self.classes:
            first += "; " + tr("classes") + " " + ", ".join(self.classes)
        trained, cases = self.provenance.get("data"), self.provenance.get("training_cases")
        second = [tr("Trained on {data}").format(data=trained) + (f" ({cases} " + tr("cases") + ")" if cases else "")
                  ] if trained else []
        real = self.provenance.get("real_cases") or {}
        if real.get("mean"):
            dice = " / ".join(f"{region} {real['mean'][f'dice_{region}']:.2f}" for region in ("WT", "TC", "ET")
                              if f"dice_{region}" in real["mean"])
            second.append(tr("real-case Dice {dice} ({cases} cases)").format(
                dice=dice, cases=len(real.get("per_case") or {}) or "?"))
        return "\n".join([first, "; ".join(second)] if second else [first])

    def details(self) -> str:
        """Everything else the metadata says (description, provenance), for a tooltip."""
        lines = [self.description, str(self.folder)]
        lines += [f"{key}: {value}" for key, value in self.provenance.items()]
        return "\n".join(line for line in lines if line)


def read_model_info(folder: str | Path) -> ModelInfo:
    """Parse MODEL/metadata.json, checked against the engine's schema; raise a message that says which file is wrong
    and how."""
    from emim.model_metadata import schema_problems, takes_missing_sequences  # stdlib only, as the engine checks it

    folder = Path(folder)
    path = folder / METADATA_FILE
    if not path.is_file():
        raise EMIMSegmentationError(tr("No metadata.json in {folder}: choose a model folder exported by 'emim export' "
                                       "(it holds model.safetensors and metadata.json).").format(folder=folder))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise EMIMSegmentationError(tr("{path} is not valid JSON ({error}); copy the model folder again or "
                                       "re-export the model.").format(path=path, error=error)) from None
    problems = schema_problems(data)
    if problems:
        raise EMIMSegmentationError(tr("{path} is not a valid E-MIM model description ({error}); "
                                       "re-export the model.").format(path=path, error=problems[0]))
    return ModelInfo(
        folder=folder, task=data["task"], name=data.get("name", folder.name), description=data.get("description", ""),
        modalities=tuple(Modality(m["name"], m.get("title", m["name"]), _patterns(m)) for m in data["modalities"]),
        labels=tuple(Label(lb["value"], lb["name"], tuple(lb["color"]), lb.get("terminology"))
                     for lb in data.get("labels", [])),
        classes=tuple(c["name"] for c in data.get("classes", [])),
        provenance=data.get("provenance", {}) or {}, takesMissing=takes_missing_sequences(data))


def _patterns(modality: dict) -> tuple[str, ...]:
    """A modality's name patterns: a list, one pattern as a string (the schema allows both), or its name."""
    patterns = modality.get("patterns", [modality["name"]])
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)


def missing_cost(info: ModelInfo, missing: list[str], strategy: str, filler: str | None = None) -> str:
    """The Dice cost of segmenting without `missing` as measured for this model (`provenance.missing_sequence_dice`,
    written by bench/missing_modality.py), or a pointer to the measurements when it was not measured (also when
    `filler`, the chosen pretraining's folder name, is not the one the fill costs were measured with)."""
    measured = info.provenance.get(MISSING_DICE) or {}
    rows = measured.get(strategy) or {}
    other_filler = strategy == "fill" and filler != measured.get("fill_pretraining")
    if len(missing) != 1 or missing[0] not in rows or "all" not in measured or other_filler:
        return tr("Its Dice cost was not measured for this model with these inputs (and this pretraining); "
                  "docs/missing-modalities.md of the E-MIM extension gives the costs measured for the bench models.")
    costs = ", ".join(f"{region} {rows[missing[0]][region] - value:+.2f}" for region, value in measured["all"].items())
    return tr("Measured Dice change on {cases}: {costs} (from {all} with every sequence).").format(
        cases=measured.get("cases", "the bench cases"), costs=costs,
        all=", ".join(f"{region} {value:.2f}" for region, value in measured["all"].items()))
