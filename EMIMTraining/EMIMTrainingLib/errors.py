"""The error the module shows to the user verbatim: it names the case, file or run folder and says what to do.

A subclass of EMIMSegmentationError, so the shared job runner (EMIMSegmentationLib.job) and code that catches the
sibling module's error handle it too.
"""

from EMIMSegmentationLib.errors import EMIMSegmentationError


class EMIMTrainingError(EMIMSegmentationError):
    """A problem the user can fix: a broken case, a missing run folder, an engine failure with its message."""
