"""Errors the CLI turns into one-line messages and exit code 2."""


class UsageError(Exception):
    """A user's mistake: unknown name, malformed file, bad option, unreadable path.

    The message is a single line that names the thing, the file or field and
    the allowed values; the CLI prints it without a traceback and exits 2.
    """


class DataIntegrityError(Exception):
    """Bytes that do not hash to the expected sha256: never used, never cached."""


class DataUnavailableError(Exception):
    """No source could provide the data; the message lists what each source said."""


class StorageError(Exception):
    """A run directory or store that cannot be written (disk full, read-only, no permission).

    What was finished before is stored; the message says what failed and that
    ``--resume`` continues once the cause is fixed. One line, exit 2.
    """
