"""The one exception type the CLI turns into a clean message and a non-zero exit instead of a traceback."""


class EmimError(Exception):
    """A problem the user can fix: the message names the file or case and says what to do."""
