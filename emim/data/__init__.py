"""The data layer: find cases (`cases`), name modalities (`modalities`), check them (`check`), load them
(`loading`, with `geometry` for canonical reorientation and physical-space resampling) and crop them for training
(`transforms`).

Nothing is imported here, so `import emim.data.modalities` (pure Python) stays cheap for the Slicer modules.
"""
