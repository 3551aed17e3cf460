"""Files that are never half-written: atomic replace of a text file, and durable renames.

Every subsystem that writes a file a user keeps (outputs, resume stores, checkpoints, lock files, data
sets) goes through `atomic_write_text`, or writes a temporary name and renames it followed by
`fsync_dir`, so a crash leaves the old file or the new one, never half of one. A leaf module: it
imports nothing of ours but `errors`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import OutputError


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """Replace `path` with `text` so that readers and crashes only ever see the old or the new content
    (no newline translation); see `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Replace `path` with `data` so that readers and crashes only ever see the old or the new content.

    Creates missing parent directories. On any failure the temporary file is removed and the target is
    left as it was. The rename is made durable too, so a journal written after this call never names a
    file a crash could take back.

    Raises:
        OutputError: the directory cannot be created or written (the message names the path).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # os.open with 0o666 lets the umask set the final permissions, as a plain open() would; O_EXCL
        # guards against clobbering another writer's temporary file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # BaseException too: a Ctrl-C mid-write must not leave a stray temporary file either. The cleanup
        # itself may fail the same way the write did (the parent is a file: NotADirectoryError); that must
        # not hide the error being reported.
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write the output ({exc.strerror or exc}); check that the "
                              "directory is writable and the disk has space") from None
        raise
    fsync_dir(path.parent)


def check_target(path: Path | str, flag: str, directory: bool = False) -> None:
    """Fail now, before any work, when `path` can never be written: a file target that is a directory, a
    directory target that is a file, or an existing ancestor that is not a directory.

    Raises:
        OutputError: naming `flag` and the path in the way.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        kind = "a file" if directory else "a directory"
        raise OutputError(f"{flag} {path}: is {kind}; give a {'directory' if directory else 'file'} path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{flag} {path}: {parent} is a file, not a directory")
            return


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable (a no-op where directories cannot be opened)."""
    # Makes the rename/unlink itself durable. Not possible on Windows (directories cannot be opened).
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
