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


def atomic_write(path: str | os.PathLike, content: Content) -> Path:
    """Write ``content`` to ``path`` atomically and return the path.

    content   bytes-like, text (written as UTF-8), or a callable that writes into the binary file object it is
              given (e.g. ``lambda f: np.save(f, array)`` or ``lambda f: torch.save(data, f)``).
    The folder must exist. Temporary names are unique per call (process id and a random part), so parallel
    writers never share one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
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
    return path


__all__ = ["atomic_write"]
