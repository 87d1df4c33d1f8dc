"""EMIMTrainingBatch.py with plain Python on slicer-core: a data set with a broken case never starts a run."""

from __future__ import annotations

import os
import subprocess
import sys

from support.slicer_scene import REPO

BATCH = REPO / "EMIMTraining" / "EMIMTrainingBatch.py"


def test_batch_refuses_a_broken_data_set_naming_the_case(brats_mini, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    case = sorted(p for p in brats_mini.iterdir() if p.is_dir())[0]
    (data / case.name).symlink_to(case, target_is_directory=True)
    broken = data / "BraTS-GLI-77777-000"
    broken.mkdir()
    for image in case.glob("*.nii.gz"):
        if not image.name.endswith("-t1c.nii.gz"):
            os.symlink(image, broken / image.name.replace(case.name, broken.name))
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, str(BATCH), "--data", str(data), "--run", str(run), "--steps", "2",
                             "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert broken.name in result.stderr and "t1c" in result.stderr and "Fix:" in result.stderr
    assert not run.exists()
