"""HTTP errors of the API: every failure is `{"error": "one line"}` with a 4xx/5xx status.

`ApiError` carries its status; library errors (`VaryError` kinds) map to one in `status_for`. app.py
installs the handlers that turn both, and FastAPI's own errors, into that shape.
"""

from __future__ import annotations

from ..errors import OutputError, VaryError, one_line


class ApiError(VaryError):
    """A request the server refuses: `status` is the HTTP status, the message is the one line sent back."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def status_for(error: BaseException) -> int:
    """The HTTP status of a library error: the client's input is 4xx, the server's own trouble 5xx."""
    if isinstance(error, ApiError):
        return error.status
    if isinstance(error, OutputError):  # the server cannot write its own files
        return 500
    if isinstance(error, VaryError):  # InputError, PromptError, ...: what the client sent
        return 400
    return 500


def error_body(error: BaseException | str) -> dict[str, str]:
    """The JSON body of an error response."""
    return {"error": one_line(error)[:1000]}
