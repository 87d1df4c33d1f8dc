"""Which loaded volume (or file) is which MRI sequence, from the model's name patterns.

The matching rule is the engine's (`emim.data.modalities`: whole-token patterns, longest match wins, ties go to
neither), so the module and `emim segment` always agree on the same names. That module is pure Python; it is
imported inside the functions so the module file stays light at Slicer start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .i18n import tr
from .metadata import Modality


def brats_modalities() -> tuple[Modality, ...]:
    """The BraTS modality set, used to load a case folder before a model is chosen."""
    from emim.data.modalities import BRATS

    return tuple(Modality(item["name"], item["title"], tuple(item["patterns"])) for item in BRATS.to_metadata())


@dataclass
class Assignment:
    """Result of matching names to modalities; `chosen` maps modality name -> name (or None)."""

    chosen: dict[str, str | None]
    ambiguous: dict[str, list[str]] = field(default_factory=dict)

    def missing(self) -> list[str]:
        return [modality for modality, name in self.chosen.items() if name is None]


def assign_modalities(names: Sequence[str], modalities: Sequence[Modality]) -> Assignment:
    """Give each modality its one matching name; several candidates are reported as ambiguous, not guessed."""
    from emim.data.modalities import ModalitySpec, match_modalities

    spec = ModalitySpec.from_metadata([{"name": m.name, "title": m.title, "patterns": list(m.patterns)}
                                       for m in modalities])
    found = match_modalities(list(names), spec)
    chosen = {m.name: found[m.name][0] if len(found[m.name]) == 1 else None for m in modalities}
    ambiguous = {m.name: found[m.name] for m in modalities if len(found[m.name]) > 1}
    return Assignment(chosen=chosen, ambiguous=ambiguous)


def input_problems(selected: dict[str, object | None], modalities: Sequence[Modality],
                   takes_missing: bool = False) -> list[str]:
    """Plain-language reasons why Apply must stay disabled: missing inputs (unless the model takes a subset, then
    only none at all) and one volume used twice."""
    problems = []
    titles = {m.name: m.title for m in modalities}
    empty = [m for m in modalities if selected.get(m.name) is None]
    if not takes_missing or len(empty) == len(modalities):
        for modality in empty:
            problems.append(tr("Select the {title} volume.").format(title=modality.title))
    seen: dict[int, str] = {}
    for name, node in selected.items():
        if node is None:
            continue
        if id(node) in seen:
            first = seen[id(node)]
            problems.append(tr("The same volume is selected for {a} and {b}.").format(a=titles.get(first, first),
                                                                                      b=titles.get(name, name)))
        seen[id(node)] = name
    return problems
