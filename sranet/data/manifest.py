"""Writing a manifest CSV (``sranet synth`` and dataset tools); ``sranet.runtime.manifest`` reads and checks it."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from sranet.errors import ManifestError
from sranet.runtime.files import atomic_write
from sranet.runtime.manifest import COLUMNS, REQUIRED


def write_manifest(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write manifest rows (dicts with keys from COLUMNS) as CSV with the columns that any row uses, in order."""
    path = Path(path)
    used = [c for c in COLUMNS if any(r.get(c) not in (None, "") for r in rows) or c in REQUIRED]
    for r in rows:
        unknown = set(r) - set(COLUMNS)
        if unknown:
            raise ManifestError(f"write_manifest: unknown column(s) {sorted(unknown)}; known are {', '.join(COLUMNS)}.")
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=used, extrasaction="raise")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: "" if r.get(c) is None else r[c] for c in used})
    return atomic_write(path, text.getvalue())


__all__ = ["write_manifest"]
