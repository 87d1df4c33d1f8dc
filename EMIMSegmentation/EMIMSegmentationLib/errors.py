"""The segmentation module's error: raised by its Logic and its engine runs (see EMIMCommonLib.errors)."""

from EMIMCommonLib.errors import EMIMError


class EMIMSegmentationError(EMIMError):
    """A problem the user can fix (missing input, mismatched grids, engine failure with its message)."""
