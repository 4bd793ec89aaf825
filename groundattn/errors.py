"""The one error type that the command line reports as ``groundattn: error: …``.

Every error a user can cause and fix (a malformed or missing file, a
configuration that cannot run, a checkpoint that does not fit what loads it)
derives from :class:`GroundattnError`; its message names the file, line or
field, what was found and what was expected. The CLI prints it on one line and
exits with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class GroundattnError(Exception):
    """An error the user can fix; the message says where and what."""


class MissingFileError(GroundattnError, FileNotFoundError):
    """A file or directory the command needs does not exist."""


class ExistingFileError(GroundattnError, FileExistsError):
    """A command would replace a file or directory it did not write."""


class NonFiniteError(GroundattnError, ArithmeticError):
    """A loss, a gradient or an input that is infinite or not a number."""
