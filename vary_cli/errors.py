"""Typed errors of the library.

Every error a user can cause (a bad file, a broken checkpoint, a missing device) is a `VaryError`
subclass whose message names the thing and the fix. Only `cli/app.py` turns them into one red line and an
exit code; library code never prints or exits.
"""


class VaryError(Exception):
    """Base class of every error `vary` reports to a user."""

    exit_code = 1


class InputError(VaryError):
    """An input file (image, PDF, data file) is missing, unreadable or of the wrong kind."""

    exit_code = 2


class WeightsError(VaryError):
    """A checkpoint directory or registry entry is missing, incomplete, corrupt or unsupported."""

    exit_code = 3


class DeviceError(VaryError):
    """The requested device or dtype is not available on this machine."""

    exit_code = 4


class OutputError(VaryError):
    """An output file or its resume state cannot be written (permissions, full disk, clashing names)."""


class PromptError(VaryError):
    """Token ids and image features do not line up (image-pad count, `<img>`/`</img>` pairing)."""

    exit_code = 5


def one_line(error: BaseException | str) -> str:
    """An error's message on one line (whitespace runs collapsed), or its type's name when it has none."""
    text = " ".join(str(error).split())
    return text or (type(error).__name__ if isinstance(error, BaseException) else "")
