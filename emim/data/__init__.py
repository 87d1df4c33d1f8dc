"""The data layer: find cases (`cases`, DICOM series through `dicom`), name modalities (`modalities`), check them
(`check`), load them (`loading`, with `geometry` for canonical reorientation and physical-space resampling),
prepare them once (`cache`, `brainbox`) and crop them for training (`crops`).

Nothing is imported here, so `import emim.data.modalities` (pure Python) stays cheap for the Slicer modules.
"""
