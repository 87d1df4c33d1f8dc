"""Inference with trained models: segmentation, classification and masked reconstruction."""
