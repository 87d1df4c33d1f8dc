"""Fine-tuning the pretrained E-MIM encoder for downstream tasks: segmentation (UNETR, `unetr` + `segmentation`)
and case-level classification."""
