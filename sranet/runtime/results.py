"""Results as JSON Lines: one line per case, appended atomically, so an interrupted run can resume.

Each line is written with one ``os.write`` of the whole encoded line, then flushed and fsynced, so a crash leaves at
most one partial last line. ``read_results`` skips such a line (it has no trailing newline or is not valid JSON),
and the writer truncates it before appending, so a rerun neither duplicates nor loses a case.

The results file must be a regular file (or not exist yet): a device (``/dev/zero``), FIFO or socket is refused
before it is opened. While a ``ResultsWriter`` is open it holds an advisory lock (``flock``) on the file, so a second
run on the same file stops at once with an error instead of appending every case again.

Case keys (``safe_name``, ``case_key``) follow one rule for ``predict`` and ``prepare``: characters outside
``A-Z a-z 0-9 . _ -`` become ``_``, leading dots go, at most ``MAX_KEY_CHARS`` (100) are kept, and an id with
nothing usable left is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from sranet.errors import InputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_KEY_CHARS = 100


def safe_name(case_id: str) -> str:
    """A case id made safe for a file name and a results key: only ``A-Z a-z 0-9 . _ -``, no leading dot, at most
    MAX_KEY_CHARS characters. InputError when nothing usable is left (e.g. ``"///"``).

    Tag-derived or user-typed ids never reach a path unsanitised (no ``/``, ``..``, spaces or control characters).
    """
    name = _UNSAFE.sub("_", str(case_id)).lstrip(".")[:MAX_KEY_CHARS]
    if not name.strip("_"):
        raise InputError(
            f"case id {case_id!r} has no characters usable in a file name; use letters, digits, '.', '_' or '-'.")
    return name


def case_key(case_id: str | None, path: str | os.PathLike | None) -> str:
    """A file-name-safe key for a case: ``safe_name(case_id)``, or ``path-<12 hex>`` from a hash of the input path
    when there is no case id.

    Never derived from DICOM tags, so patient names and IDs cannot leak into results or file names.
    """
    if case_id:
        return safe_name(case_id)
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
    if not check_results_path(path):
        return [], 0
    try:
        with open(path, "rb") as f:
            return _read_lines(f, path)
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or type(exc).__name__}).", path=path,
                         hint="Give a results file you can read and write, e.g. --out results.jsonl.") from exc


def _read_lines(f, path: Path) -> tuple[list[dict[str, Any]], int]:
    """Complete records of an open results file, line by line (a large file is never held whole)."""
    records: list[dict[str, Any]] = []
    valid = 0
    pending: tuple[int, bytes, ValueError] | None = None  # a bad line: an error unless it is the last one
    for n, line in enumerate(f):
        if pending is not None:
            number, _, exc = pending
            why = getattr(exc, "msg", None) or "not UTF-8 text"
            raise InputError(f"line {number} is not valid JSON ({why}); this is not a results file sranet can resume.",
                             path=path, hint="Write to a new --out file, or remove the damaged line.") from exc
        if not line.endswith(b"\n"):  # text after the final newline: a partial write
            break
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
                pending = (n + 1, line, exc)  # a garbled final line is a partial write; one in the middle is not
                continue
            if not isinstance(record, dict):
                raise InputError(f"line {n + 1} is not a JSON object.", path=path)
            records.append(record)
        valid += len(line)
    return records, valid


def check_results_path(path: Path) -> bool:
    """True when ``path`` is an existing regular file, False when it does not exist yet; InputError for a folder,
    a device, FIFO or socket (which a reader would block on or read without end) or a path that cannot be checked."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise InputError(f"cannot be used as a results file ({exc.strerror or type(exc).__name__}).", path=path,
                         hint="Give a file name in a folder you can write, e.g. --out results.jsonl.") from exc
    if stat.S_ISDIR(mode):
        raise InputError("is a folder; a results file (JSON Lines) was expected.", path=path,
                         hint="Give a file name, e.g. --out results.jsonl.")
    if not stat.S_ISREG(mode):
        raise InputError("is not a regular file (a device, FIFO or socket); results go to a JSON Lines file.",
                         path=path, hint="Give a file name, e.g. --out results.jsonl.")
    return True


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
        self._fd: int | None = None
        check_results_path(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_NONBLOCK: a FIFO put there since the check fails to open instead of waiting for a reader
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666)
        except OSError as exc:
            raise InputError(f"cannot be opened for appending results ({exc.strerror or type(exc).__name__}).",
                             path=self.path, hint="Give a file in a folder you can write, e.g. --out results.jsonl.",
                             ) from exc
        try:
            self._open_checked(retry_failed)
        except BaseException:
            self.close()
            raise

    def _open_checked(self, retry_failed: bool) -> None:
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            raise InputError("is not a regular file; results go to a JSON Lines file.", path=self.path)
        _lock(self._fd, self.path)  # before reading: the file is ours until close
        records, valid = read_results(self.path)
        self.truncated_bytes = 0
        size = os.fstat(self._fd).st_size
        if size > valid:  # drop the partial last line a crash left behind
            self.truncated_bytes = size - valid
            os.ftruncate(self._fd, valid)
            os.fsync(self._fd)
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

    @staticmethod
    def encode(records: dict[str, Any] | list[dict[str, Any]]) -> bytes:
        """The JSON Lines bytes of one record, or of the records of one input. A record that cannot be written as
        strict JSON (NaN, infinity, an unknown type) raises InputError naming the field, before anything is written."""
        records = [records] if isinstance(records, dict) else list(records)
        if not records or any(not isinstance(r, dict) or "case" not in r for r in records):
            raise InputError("each result record needs a 'case' key.")
        lines = []
        for r in records:
            try:
                lines.append(json.dumps(r, sort_keys=False, allow_nan=False, default=_jsonable) + "\n")
            except (ValueError, TypeError) as exc:
                raise InputError(f"the record of case {r.get('case')!r} cannot be written as JSON: "
                                 f"{_bad_field(r) or exc}.") from exc
        return "".join(lines).encode("utf-8")

    def write(self, records: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Append one record, or the records of one input, as lines in a single write, then fsync. InputError (and
        nothing written) for a record that is not strict JSON; InputError for a write the file system refuses."""
        records = [records] if isinstance(records, dict) else list(records)
        view = memoryview(self.encode(records))
        try:
            while view:  # os.write may write fewer bytes; with O_APPEND each piece still lands at the end
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError as exc:
            raise InputError(f"cannot append to the results file ({exc.strerror or type(exc).__name__}); the lines "
                             "written before are kept.", path=self.path,
                             hint="Free space or fix the file system, then run the same command again to resume.",
                             ) from exc
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


def _lock(fd: int, path: Path) -> None:
    """An exclusive advisory lock on the results file, or InputError when another run holds it. Released when the
    file is closed (also when the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no advisory locks
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError("is being written by another sranet run (it holds the file's lock); two runs on one results "
                         "file would each predict and append every case.", path=path,
                         hint="Wait for the other run to finish (a rerun then resumes), or give another --out.") from None
    except OSError:  # a file system without flock (some network mounts): go on unlocked
        return


def _bad_field(value: Any, where: str = "") -> str:
    """The first field of a record that strict JSON cannot hold (a NaN or infinite number), in words: nested fields
    and list items are named with dots (``top_patches.0.patient_mm.1``)."""
    import math
    import numbers

    if isinstance(value, numbers.Real) and not math.isfinite(value):
        return f"field {where!r} is {value}"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = _bad_field(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return ""


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
