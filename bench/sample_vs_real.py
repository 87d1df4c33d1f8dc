"""Picture: one generated sample case beside one real BraTS case, same four modalities, axial slice through each
tumour's centre, label outlines overlaid. Used to judge by eye whether the generator looks like the real thing.

    .venv/bin/python bench/sample_vs_real.py [--real DIR] [--seed 0] [--size full] [--out docs/sample-vs-real.png]
    .venv/bin/python bench/sample_vs_real.py --smoke    (a small generated case beside the shipped sample case)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import common  # noqa: E402

MODALITIES = ("t1n", "t1c", "t2w", "t2f")
LABEL_COLOURS = {1: "#ff4040", 2: "#40ff40", 3: "#ffff40"}  # NCR, ED, ET


def load_real(folder: Path) -> tuple[str, dict[str, np.ndarray], np.ndarray, float]:
    import nibabel as nib

    name = folder.name
    images = {m: np.asanyarray(nib.load(folder / f"{name}-{m}.nii.gz").dataobj) for m in MODALITIES}
    seg_image = nib.load(folder / f"{name}-seg.nii.gz")
    return name, images, np.asanyarray(seg_image.dataobj), float(seg_image.header.get_zooms()[0])


def tumour_slice(seg: np.ndarray) -> int:
    """Axial slice through the tumour core's centre (whole tumour when there is no core)."""
    core = np.isin(seg, (1, 3))
    index = np.argwhere(core if core.any() else seg > 0)
    return int(round(index[:, 2].mean()))


def draw_row(axes, title: str, images: dict[str, np.ndarray], seg: np.ndarray) -> None:
    k = tumour_slice(seg)
    for ax, modality in zip(axes, MODALITIES):
        plane = images[modality][:, :, k].T.astype(np.float32)  # rows: anterior to posterior; columns: R to L
        inside = plane[plane > 0]
        high = np.percentile(inside, 99.5) if inside.size else 1.0
        ax.imshow(plane, cmap="gray", vmin=0, vmax=high, interpolation="nearest")
        labels = seg[:, :, k].T
        for value, colour in LABEL_COLOURS.items():
            if (labels == value).any():
                ax.contour(labels == value, levels=[0.5], colors=colour, linewidths=0.6)
        ax.set_title(f"{title} {modality} z={k}", fontsize=7)
        ax.axis("off")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, help="a real BraTS 2023 case folder (default: the largest mini case; "
                                                  "with --smoke the shipped sample case)")
    parser.add_argument("--seed", type=int, default=5, help="5: a ring-enhancing case, like the default real one")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--size", default="full", choices=("full", "small"))
    parser.add_argument("--out", type=Path, help="picture (default: docs/sample-vs-real.png; with --smoke "
                                                 "<--results>/sample-vs-real.png)")
    args = common.parse_args(parser, argv, "a small generated case beside the shipped sample case")
    if args.smoke:
        from EMIMCommonLib.sample_data import sample_case_folder

        args.size, args.real = "small", args.real or sample_case_folder()
        args.out = args.out or args.results / "sample-vs-real.png"
    args.real = args.real or common.real_mini_case()
    if args.real is None:
        parser.error(f"give --real: no real mini case in {common.MINI_DATA}")
    args.out = args.out or REPO / "docs" / "sample-vs-real.png"

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emim.sample import synthesize_case

    start = time.perf_counter()
    case = synthesize_case(args.seed, args.index, args.size)
    print(f"generated {case.case_id} ({args.size}) in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    real_name, real_images, real_seg, _ = load_real(args.real)

    figure, axes = plt.subplots(2, 4, figsize=(8.0, 4.6), dpi=90)
    draw_row(axes[0], f"synthetic {case.case_id[10:15]}", case.images, case.seg)
    draw_row(axes[1], f"real {real_name[10:15]}", real_images, real_seg)
    legend = "outlines: red necrotic core (1), green edema (2), yellow enhancing (3)"
    figure.text(0.5, 0.01, legend, ha="center", fontsize=7)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out)
    plt.close(figure)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} kB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
