"""The harness's exceptions (here, not in api.py, so the store can raise them too)."""


class HarnessError(Exception):
    """A problem the user can fix (bad name, bad value, bad file); shown as one line."""


class StorageError(HarnessError):
    """A file of the results could not be written or read (disk full, permissions)."""


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss, weight or likelihood: the run has failed."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the run saved its checkpoint and stopped to resume later."""
