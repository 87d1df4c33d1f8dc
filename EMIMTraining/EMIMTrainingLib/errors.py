"""The training module's error: raised by its Logic and its engine runs (see EMIMCommonLib.errors)."""

from EMIMCommonLib.errors import EMIMError


class EMIMTrainingError(EMIMError):
    """A problem the user can fix: a broken case, a missing run folder, an engine failure with its message."""
