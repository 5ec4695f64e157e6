"""One exception root. Every message says what the user should do next.

Only the CLI and the UI turn these into user-facing text; library code raises them.
"""


class RagError(Exception):
    """Root of all errors this package raises on purpose."""


class ConfigError(RagError):
    """A setting has a value we cannot use."""


class InputError(RagError):
    """A question, filter or data file we cannot accept."""


class ModelError(RagError):
    """The embedding model is missing, corrupt or cannot be loaded."""


class IndexNotFoundError(RagError):
    """No index at the given folder."""


class IndexDamagedError(IndexNotFoundError):
    """A published index version fails its checks: a file is missing, truncated or changed."""


class IndexMismatchError(RagError):
    """The index was built with another model or other chunk settings."""


class GeneratorError(RagError):
    """A generator backend failed, timed out or is unknown."""


class BusyError(RagError):
    """Every answer worker is busy and the waiting line is full: try again in `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: int = 5):
        super().__init__(message)
        self.retry_after_s = retry_after_s
