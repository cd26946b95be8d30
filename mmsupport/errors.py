"""The few exceptions mmsupport raises on purpose.

Every message says what went wrong *and* how to fix it, because it is shown as-is to the person at the other end:
the CLI prints it on one line, the UI turns it into a ``gr.Error``.
"""


class MMSupportError(Exception):
    """Base class: ``str(error)`` is a complete, user-facing sentence with a fix."""

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} {hint}")


class InvalidInput(MMSupportError):
    """Input from a person or a file is unusable: a corrupt image, a CSV without an id column, an empty message."""


class CatalogError(MMSupportError):
    """The LanceDB catalog is missing, empty or cannot be written."""


class ModelUnavailable(MMSupportError):
    """A model could not be loaded or reached: offline, missing weights, out of memory, server down."""
