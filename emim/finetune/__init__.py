"""Fine-tuning the pretrained E-MIM encoder for downstream tasks: segmentation (UNETR from `emim.model.unetr`,
trained by `segmentation`; a whole model adapted by `from_model`) and case-level classification."""
