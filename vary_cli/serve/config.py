"""The server's settings as one frozen dataclass, checked when it is built; `vary serve` fills it from flags.

Used by every module of serve/; nothing here imports torch or the web stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VaryError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """`--keep-results`: "90s", "30m", "12h", "7d", "2w" or plain seconds -> seconds.

    Raises:
        VaryError: anything else (the message shows the accepted forms).
    """
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise VaryError(f"--keep-results {text!r}: give a positive duration like 90s, 30m, 12h, 7d or 2w")
    return float(match.group(1)) * _SECONDS[match.group(2)]


@dataclass(frozen=True)
class ServeConfig:
    """How `vary serve` listens, whom it lets in and how much work it accepts."""

    jobs_dir: Path
    """Where jobs, their uploads and finished pages live (`--jobs-dir`; default VARY_HOME/serve/jobs)."""
    model_name: str = "vary"
    """The model's name in /v1/models, /healthz and chat completions (the `--model` given)."""
    host: str = "127.0.0.1"
    """Address to bind (`--host`); only this machine by default."""
    port: int = 8000
    """Port to bind (`--port`); 0 picks a free one (the start-up line says which)."""
    token: str | None = None
    """Bearer token every route but /healthz requires (`--token` or VARY_SERVE_TOKEN); None: no auth."""
    max_upload_mb: float = 200.0
    """Largest request body in MiB, enforced while it streams in (`--max-upload-mb`)."""
    max_job_pages: int = 1000
    """Most pages one job may ask for (`--max-job-pages`)."""
    max_queue_pages: int = 10000
    """Most pages waiting in the queue over all jobs; more is refused with 429 (`--max-queue-pages`)."""
    max_new_tokens: int = 2048
    """Default and ceiling of tokens per page for every request (`--max-new-tokens`)."""
    cors: tuple[str, ...] = field(default_factory=tuple)
    """Origins allowed to call the API from a browser (`--cors ORIGIN`, repeatable); none by default."""
    keep_results: float | None = None
    """Seconds a finished job is kept (`--keep-results 7d`); None keeps it until it is deleted."""
    allow_remote_images: bool = False
    """Let chat completions fetch http(s) image URLs (`--allow-remote-images`); data: URLs only by default."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise VaryError(f"--port must be between 0 and 65535, got {self.port}")
        if self.max_upload_mb <= 0:
            raise VaryError(f"--max-upload-mb must be positive, got {self.max_upload_mb}")
        if self.max_job_pages < 1 or self.max_queue_pages < 1:
            raise VaryError("--max-job-pages and --max-queue-pages must be at least 1")
        if self.max_job_pages > self.max_queue_pages:
            raise VaryError(f"--max-job-pages ({self.max_job_pages}) cannot exceed --max-queue-pages "
                            f"({self.max_queue_pages}): such a job could never be queued")
        if self.max_new_tokens < 1:
            raise VaryError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.token is not None and not self.token.strip():
            raise VaryError("--token is empty; give a token, or leave it out to serve without auth")
        if self.keep_results is not None and self.keep_results <= 0:
            raise VaryError("--keep-results must be a positive duration")
        for origin in self.cors:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise VaryError(f"--cors {origin!r}: give an origin like https://example.org (scheme and "
                                "host, no path), or *")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)
