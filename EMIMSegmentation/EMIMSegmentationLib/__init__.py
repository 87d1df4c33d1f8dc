"""Qt-free building blocks of the EMIMSegmentation module: they work on MRML only, so they run (and are tested)
in plain Python on slicer-core as well as inside 3D Slicer. Only `widget.py` and `install.py` touch Qt."""
