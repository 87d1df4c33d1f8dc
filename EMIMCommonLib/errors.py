"""The error the modules show to the user verbatim: it names the volume, file, case or run folder and says what to
do. Each module has its own subclass; the shared job raises the one its Logic asks for."""


class EMIMError(Exception):
    """A problem the user can fix (missing input, mismatched grids, an engine failure with the engine's message)."""
