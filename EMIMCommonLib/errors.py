"""The error the module shows to the user verbatim: it names the volume, file or case and says what to do."""


class EMIMSegmentationError(Exception):
    """A problem the user can fix (missing input, mismatched grids, engine failure with its message)."""
