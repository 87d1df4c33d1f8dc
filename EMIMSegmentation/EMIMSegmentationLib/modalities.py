"""Which loaded volume (or file) is which MRI sequence, from the model's name patterns.

Patterns are case-insensitive regular expressions searched in the name; a name goes to the modality whose
matching pattern comes earliest in its list (so "t1c" beats the looser "t1" rule). A modality with no match is
missing, one with two equally good matches is ambiguous; both are reported in words for the Apply tooltip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from .i18n import tr
from .metadata import Modality

# Used to load a case folder before a model is chosen: BraTS 2023 names first, then the older BraTS names.
BRATS_MODALITIES: tuple[Modality, ...] = (
    Modality("t1n", "T1 native", ("t1n", r"(?<![a-z0-9])t1w?(?![a-z0-9]|[-_ ]?(ce|gd|c|post|contrast))", r"t1[-_ ]?(native|pre)")),
    Modality("t1c", "T1 contrast-enhanced", ("t1c", r"t1[-_ ]?(ce|gd|post)", "contrast")),
    Modality("t2w", "T2 weighted", ("t2w", r"(?<![a-z0-9])t2w?(?![a-z0-9]|[-_ ]?(f|flair))")),
    Modality("t2f", "T2 FLAIR", ("t2f", "flair")),
)


def match_rank(name: str, modality: Modality) -> int | None:
    """Index of the first of the modality's patterns found in `name`, or None when none matches."""
    lowered = name.lower()
    for index, pattern in enumerate(modality.patterns):
        if re.search(pattern, lowered, flags=re.IGNORECASE):
            return index
    return None


@dataclass
class Assignment:
    """Result of matching names to modalities; `chosen` maps modality name -> name (or None)."""

    chosen: dict[str, str | None]
    ambiguous: dict[str, list[str]] = field(default_factory=dict)

    def missing(self) -> list[str]:
        return [modality for modality, name in self.chosen.items() if name is None]


def assign_modalities(names: Sequence[str], modalities: Sequence[Modality]) -> Assignment:
    """Give each modality the best-matching name; each name is used at most once, by its best modality."""
    best: dict[str, tuple[int, int]] = {}  # name -> (rank, modality index)
    for name in names:
        ranks = [(rank, i) for i, m in enumerate(modalities) if (rank := match_rank(name, m)) is not None]
        if ranks:
            best[name] = min(ranks)
    chosen: dict[str, str | None] = {}
    ambiguous: dict[str, list[str]] = {}
    for i, modality in enumerate(modalities):
        candidates = sorted((rank, name) for name, (rank, index) in best.items() if index == i)
        chosen[modality.name] = candidates[0][1] if candidates else None
        tied = [name for rank, name in candidates if rank == candidates[0][0]] if candidates else []
        if len(tied) > 1:
            ambiguous[modality.name] = tied
    return Assignment(chosen=chosen, ambiguous=ambiguous)


def input_problems(selected: dict[str, object | None], modalities: Sequence[Modality]) -> list[str]:
    """Plain-language reasons why Apply must stay disabled: missing inputs and one volume used twice."""
    problems = []
    titles = {m.name: m.title for m in modalities}
    for modality in modalities:
        if selected.get(modality.name) is None:
            problems.append(tr("Select the {title} volume.").format(title=modality.title))
    seen: dict[int, str] = {}
    for name, node in selected.items():
        if node is None:
            continue
        if id(node) in seen:
            problems.append(tr("The same volume is selected for {a} and {b}.").format(a=titles.get(seen[id(node)], seen[id(node)]),
                                                                                      b=titles.get(name, name)))
        seen[id(node)] = name
    return problems
