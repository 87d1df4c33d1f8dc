"""E-MIM engine: self-supervised pretraining and tumour segmentation for multi-modal MRI.

Plain Python on torch, MONAI, nibabel, SimpleITK and numpy. Never imports slicer, qt or vtk, so the same code
runs from the shell, in batch, under torchrun and as a subprocess of the 3D Slicer modules.
"""

__version__ = "0.1.0"
