"""Semi-synthetic multi-modal brain-tumour cases built from real anatomy (MNI152 via nilearn), in the BraTS layout."""

from emim.sample.generate import SampleCase, make_sample_cases, synthesize_case

__all__ = ["SampleCase", "make_sample_cases", "synthesize_case"]
