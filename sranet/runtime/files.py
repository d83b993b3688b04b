"""``atomic_write``: the one way sranet writes a file that a crash must never leave half-written.

The data goes to a temporary file in the target's folder, is flushed and fsynced, and then replaces the target with
``os.replace`` (atomic on one file system). On any error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Content = bytes | bytearray | memoryview | str | Callable[[BinaryIO], object]


def atomic_write(path: str | os.PathLike, content: Content, *, tmp_dir: str | os.PathLike | None = None,
                 fsync_dir: bool = False) -> Path:
    """Write ``content`` to ``path`` atomically and return the path.

    content   bytes-like, text (written as UTF-8), or a callable that writes into the binary file object it is
              given (e.g. ``lambda f: np.save(f, array)`` or ``lambda f: torch.save(data, f)``).
    tmp_dir   folder for the temporary file; default the target's folder. It must be on the target's file system
              (the rename is atomic only there); a folder that crash recovery empties (the DICOM node's spool
              ``tmp/``) keeps a killed write's leftovers out of the target's folder.
    fsync_dir also fsync the target's folder after the rename, so that the new name, not only the data, survives a
              power loss (what a journal of states needs: the DICOM node's spool).
    The folder must exist. Temporary names are unique per call (process id and a random part), so parallel
    writers never share one.
    """
    path = Path(path)
    folder = Path(tmp_dir) if tmp_dir is not None else path.parent
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as f:  # created with the user's umask, like the file it replaces
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync_dir:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


__all__ = ["atomic_write"]
