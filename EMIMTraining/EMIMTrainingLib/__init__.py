"""Qt-free building blocks of the EMIMTraining module: they work on MRML and engine subprocesses only, so they run
(and are tested) in plain Python on slicer-core as well as inside 3D Slicer. Only `widget.py` touches Qt.

The engine runner, job tracking, translation and dependency installer come from EMIMSegmentationLib: both modules
are installed in the same scripted-modules folder, so that package is importable here.
"""
