"""Results as JSON Lines: one line per case, appended atomically, so an interrupted run can resume.

Each line is written with one ``os.write`` of the whole encoded line, then flushed and fsynced, so a crash leaves at
most one partial last line. ``read_results`` skips such a line (it has no trailing newline or is not valid JSON),
and the writer truncates it before appending, so a rerun neither duplicates nor loses a case.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from sranet.errors import InputError

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def case_key(case_id: str | None, path: str | os.PathLike | None) -> str:
    """A file-name-safe key for a case: the sanitised case id, or ``path-<12 hex>`` from a hash of the input path.

    Never derived from DICOM tags, so patient names and IDs cannot leak into results or file names.
    """
    if case_id:
        key = _SAFE.sub("_", str(case_id)).strip("._")[:80]
        if key:
            return key
    if path is None:
        raise InputError("a case needs a case id or an input path to build its key.")
    resolved = os.path.abspath(os.fspath(path))
    return "path-" + hashlib.sha256(resolved.encode("utf-8")).hexdigest()[:12]


def read_results(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """Read complete records from a JSONL file -> (records, byte length of the valid prefix).

    A last line without a newline, or one that is not valid JSON, is a crash's partial write: not returned, and not
    counted in the valid prefix. A bad line in the middle is an error (the file was edited or is not ours).
    """
    path = Path(path)
    if not path.exists():
        return [], 0
    if path.is_dir():
        raise InputError("is a folder; a results file (JSON Lines) was expected.", path=path,
                         hint="Give a file name, e.g. --out results.jsonl.")
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    valid = 0
    lines = data.split(b"\n")
    for n, line in enumerate(lines):
        is_last = n == len(lines) - 1
        if is_last:  # text after the final newline: a partial write (or empty)
            break
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
                if n == len(lines) - 2 and not lines[-1]:
                    break  # a garbled final line: treat as partial
                why = getattr(exc, "msg", None) or "not UTF-8 text"
                raise InputError(
                    f"line {n + 1} is not valid JSON ({why}); this is not a results file sranet can resume.",
                    path=path, hint="Write to a new --out file, or remove the damaged line.") from exc
            if not isinstance(record, dict):
                raise InputError(f"line {n + 1} is not a JSON object.", path=path)
            records.append(record)
        valid += len(line) + 1
    return records, valid


class ResultsWriter:
    """Append-only JSONL writer. ``done`` holds the keys of the inputs already recorded (successes and failures):
    a record's ``input`` where it has one (an input that yields several records), else its ``case``. An input whose
    records carry ``input_records`` (how many it wrote) is done only when that many are there: a crash in the
    middle of its write leaves it to be done again.

    With ``retry_failed=True`` inputs recorded with an error are not in ``done``, so a rerun tries them again; their
    new lines supersede the old ones (readers keep the last record per key).
    """

    def __init__(self, path: str | os.PathLike, *, retry_failed: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records, valid = read_results(self.path)
        self.truncated_bytes = 0
        if self.path.exists() and self.path.stat().st_size > valid:
            self.truncated_bytes = self.path.stat().st_size - valid
            with open(self.path, "r+b") as f:  # drop the partial last line a crash left behind
                f.truncate(valid)
                os.fsync(f.fileno())
        latest: dict[str, dict[str, Any]] = {}
        for r in records:
            if "case" in r:
                latest[str(r["case"])] = r
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in latest.values():
            groups.setdefault(input_key(r), []).append(r)
        complete = {k for k, rs in groups.items() if all(len(rs) >= _expected(r) for r in rs)}
        failed = {k for k, rs in groups.items() if any(r.get("error") for r in rs)}
        self.done = complete - (failed if retry_failed else set())
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, records: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Append one record, or the records of one input, as lines in a single write, then fsync."""
        records = [records] if isinstance(records, dict) else list(records)
        if not records or any("case" not in r for r in records):
            raise InputError("each result record needs a 'case' key.")
        data = "".join(json.dumps(r, sort_keys=False, allow_nan=False, default=_jsonable) + "\n" for r in records)
        view = memoryview(data.encode("utf-8"))
        while view:  # os.write may write fewer bytes; with O_APPEND each piece still lands at the end
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)
        self.done.update(input_key(r) for r in records)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _expected(record: dict[str, Any]) -> int:
    try:
        return int(record.get("input_records", 1))
    except (TypeError, ValueError):
        return 1


def input_key(record: dict[str, Any]) -> str:
    """The key of the input a record came from: ``input`` where one input yields several records, else ``case``."""
    return str(record.get("input", record["case"]))


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
