"""Modality names, titles and the name patterns that assign files or Slicer volumes to them.

The modality set and its order are data: BraTS uses t1n/t1c/t2w/t2f, a prostate data set t2w/adc/hbv, and a model
folder's `metadata.json` carries its own list (`to_metadata`/`from_metadata`), so nothing else in the engine
hard-codes modality names.

Matching rule (`assign_modalities`): patterns are case-insensitive regular expressions searched in a name whose
image extension (.nii.gz, .nrrd, ...) is removed. Each name goes to the modality with the LONGEST match, so
"T2-FLAIR" is t2f (it also contains "t2") and "T1 post" is t1c (it also contains "T1"). The BraTS patterns only
match whole tokens (no letter or digit on either side), so "t1" never matches inside "t1c" or "t1ce".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from emim.contract import BRATS_MODALITIES

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".mgz")
# Name patterns come from a model's metadata.json and run on every file and volume name, and Python's re has no
# time limit, so patterns are held to a subset that cannot backtrack for long: bounded length, no repeat inside a
# repeat or an alternation inside a repeat (`(a+)+`, `(a|a)*` take exponential time), no back-references, and few
# unbounded repeats (each multiplies the work by the name's length).
MAX_PATTERN_LENGTH = 200
MAX_UNBOUNDED_REPEATS = 3


def token(regex: str) -> str:
    """A pattern that matches `regex` only as a whole token: not preceded or followed by a letter or digit."""
    return rf"(?<![a-z0-9])(?:{regex})(?![a-z0-9])"


def strip_extension(name: str) -> str:
    """The name without a known image extension, so "x-t1n.nii.gz" is matched as "x-t1n"."""
    lowered = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lowered.endswith(ext):
            return name[: -len(ext)]
    return name


def pattern_problem(pattern: object) -> str | None:
    """Why a name pattern is outside the safe subset above (or not a regular expression), or None."""
    try:  # the standard library's own parse of a pattern
        from re import _constants as ops, _parser
    except ImportError:  # Python 3.10
        import sre_constants as ops
        import sre_parse as _parser

    if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_PATTERN_LENGTH:
        return f"must be a regular expression of 1 to {MAX_PATTERN_LENGTH} characters"
    try:
        parsed = _parser.parse(pattern)
    except re.error as error:
        return f"is not a regular expression ({error})"
    repeats = (ops.MAX_REPEAT, ops.MIN_REPEAT, getattr(ops, "POSSESSIVE_REPEAT", ops.MAX_REPEAT))  # 3.11+
    unbounded = 0

    def walk(items, in_repeat: bool) -> str | None:
        nonlocal unbounded
        for op, value in items:
            if op in (ops.GROUPREF, ops.GROUPREF_EXISTS):
                return "uses a back-reference"
            if op in repeats:
                many = value[1] > 1
                if many and in_repeat:
                    return "repeats something that itself repeats (like (a+)+), which can take exponential time"
                unbounded += value[1] == ops.MAXREPEAT
                problem = walk(value[2], in_repeat or many)
            elif op == ops.BRANCH:
                if in_repeat:
                    return "repeats an alternation (like (a|b)*), which can take exponential time"
                problem = next(filter(None, (walk(branch, in_repeat) for branch in value[1])), None)
            elif op == ops.SUBPATTERN:
                problem = walk(value[3], in_repeat)
            elif op in (ops.ASSERT, ops.ASSERT_NOT):
                problem = walk(value[1], in_repeat)
            else:
                continue
            if problem:
                return problem
        return None

    problem = walk(parsed, False)
    if problem is None and unbounded > MAX_UNBOUNDED_REPEATS:
        problem = f"has {unbounded} unbounded repeats (* or +); at most {MAX_UNBOUNDED_REPEATS} are accepted"
    return problem


@dataclass(frozen=True)
class ModalitySpec:
    """An ordered modality set: the channel order of every model and data set that uses it."""

    names: tuple[str, ...]
    titles: dict[str, str]
    patterns: dict[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"modality names must be non-empty and unique, got {self.names}")
        for name in self.names:
            for pattern in self.patterns.get(name, ()):
                problem = pattern_problem(pattern)
                if problem:
                    raise ValueError(f"name pattern {pattern!r} of modality {name!r} {problem}")

    def title(self, name: str) -> str:
        return self.titles.get(name, name)

    def select(self, names: Sequence[str]) -> "ModalitySpec":
        """The given modalities in the given order; names this spec does not know match themselves as tokens."""
        names = tuple(names)
        return ModalitySpec(
            names=names,
            titles={n: self.titles.get(n, n) for n in names},
            patterns={n: self.patterns.get(n) or (token(re.escape(n)),) for n in names},
        )

    def to_metadata(self) -> list[dict]:
        """The `modalities` list of a model folder's metadata.json (docs/engine-interface.md)."""
        return [{"name": n, "title": self.title(n), "patterns": list(self.patterns.get(n, ()))} for n in self.names]

    @classmethod
    def from_metadata(cls, items: list[dict | str]) -> "ModalitySpec":
        """Inverse of `to_metadata`; a plain string item, or an item without patterns, matches its own name."""
        entries = [{"name": item} if isinstance(item, str) else dict(item) for item in items]
        if any("name" not in e for e in entries):
            raise ValueError(f"every modality needs a 'name', got {items}")
        names = tuple(str(e["name"]) for e in entries)
        return cls(
            names=names,
            titles={str(e["name"]): str(e.get("title") or e["name"]) for e in entries},
            patterns={str(e["name"]): tuple(e.get("patterns") or (token(re.escape(str(e["name"]))),)) for e in entries},
        )


# A contrast keyword later in a T1 series' description ("T1 3D GD", "T1_MPRAGE_GADO", "t1_mprage_sag_post"): the
# match runs from the T1 to the keyword, so it is longer than the plain T1 match and the name is t1c; a keyword right
# after a negation ("T1 pre contrast", "T1 w/o gd") is not one.
NEGATED = r"(?<!(?:pre|non|w/o)[ _-])(?<!(?:no|wo)[ _-])(?<!without[ _-])"
T1_THEN_CONTRAST = token(r"t1w?") + ".*" + NEGATED + token(r"gd|gado|gadolinium|post|ce|contrast|\+[ _-]?c")

BRATS = ModalitySpec(
    names=BRATS_MODALITIES,
    titles={"t1n": "T1 native", "t1c": "T1 contrast-enhanced", "t2w": "T2 weighted", "t2f": "T2 FLAIR"},
    patterns={
        # BraTS 2023 "-t1n", BraTS 2021 "_t1", what Slicer users call a plain T1, and a T1-weighted FLAIR (longer
        # than the FLAIR match, so "AX T1 FLAIR" is not t2f)
        "t1n": (token(r"t1n"), token(r"t1w?"), token(r"t1[ _-]?(?:native|pre|pre[ _-]?contrast)"),
                token(r"t1w?[ _-]?flair")),
        # BraTS 2023 "-t1c", BraTS 2021 "_t1ce", T1Gd / T1post / T1+C, and a contrast keyword later in the name
        "t1c": (token(r"t1c"), token(r"t1ce"),
                token(r"t1w?[ _-]?(?:gd|ce|c|post|post[ _-]?contrast|contrast|\+[ _-]?c)"), T1_THEN_CONTRAST),
        "t2w": (token(r"t2w"), token(r"t2"), token(r"t2[ _-]?weighted")),
        "t2f": (token(r"t2f"), token(r"flair"), token(r"t2[ _-]?flair")),
    },
)


def _match_length(name: str, patterns: Sequence[str]) -> int:
    """Length of the longest match of any pattern in `name` (0: no match)."""
    best = 0
    for pattern in patterns:
        for match in re.finditer(pattern, name, flags=re.IGNORECASE):
            best = max(best, match.end() - match.start())
    return best


def match_modalities(names: Sequence[str], spec: ModalitySpec) -> dict[str, list[str]]:
    """Every modality -> all names whose longest match is for that modality (several means ambiguous).

    A name that matches two modalities equally well goes to neither; a name that matches none is ignored.
    """
    found: dict[str, list[str]] = {m: [] for m in spec.names}
    for name in names:
        lengths = {m: _match_length(strip_extension(name), spec.patterns.get(m, ())) for m in spec.names}
        best = max(lengths.values())
        winners = [m for m, length in lengths.items() if length == best]
        if best > 0 and len(winners) == 1:
            found[winners[0]].append(name)
    return found


def assign_modalities(names: Sequence[str], spec: ModalitySpec) -> dict[str, str]:
    """Modality -> the one name assigned to it; a modality with no name, or with several, is left out.

    Leaving ambiguous modalities out (rather than guessing) lets the caller ask the user; use `match_modalities`
    to list the competing names.
    """
    return {m: found[0] for m, found in match_modalities(names, spec).items() if len(found) == 1}
