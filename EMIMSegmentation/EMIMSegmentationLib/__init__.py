"""Qt-free building blocks of the EMIMSegmentation module: they work on MRML only, so they run (and are tested)
in plain Python on slicer-core as well as inside 3D Slicer. Only `widget.py` touches Qt. The engine runner, job,
errors, installer and sample case come from EMIMCommonLib."""

import sys
from pathlib import Path

# EMIMCommonLib is installed beside this package; in the source tree it is one folder further up.
_ROOT = Path(__file__).resolve().parents[2]
if (_ROOT / "EMIMCommonLib").is_dir() and str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))
