"""Argument types and constants shared by several subcommands."""

from __future__ import annotations

import argparse

PERMILLE = 1000  # progress units over a whole inference job: windows of each case, cases of the batch


def int_triple(text: str) -> tuple[int, int, int]:
    """`96` or `128,128,96` (or `128x128x96`) -> a 3D size."""
    values = [int(v) for v in text.replace("x", ",").split(",")]
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"give one size or three (X,Y,Z), got {text!r}")
    return tuple(values * 3 if len(values) == 1 else values)  # type: ignore[return-value]


def image_assignment(text: str) -> tuple[str, str]:
    """`--image NAME=PATH` -> (modality name, path)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--image takes NAME=PATH (e.g. t1n=case/t1.nii.gz), got {text!r}")
    return name.strip(), path
