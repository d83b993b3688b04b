"""Running one bad-input case through the CLI and saying what came out.

Each case runs in-process (typer's CliRunner on ``sranet.cli.main.app``) under a timeout: SIGALRM raises
``CaseTimeout`` (a BaseException, so no ``except Exception`` in the code under test can swallow it) and, should the
process be stuck inside C code that never returns to Python, faulthandler ends the whole test run after three times
the timeout with every thread's traceback, so a hang can never pass.

What came out is one of:

  error     exit 1 with exactly one ``Error:`` line (or a usage error from the argument parser, exit 2)
  failure   the run finished, and the case is a failure record (``predict``: a JSONL record with ``error``;
            ``prepare``: a line of OUT/failures.jsonl); a whole study's side refused for want of a femoral head
            (or for metal near it) is one too, with exit code 0
  flagged   exit 0, and the case's record carries QC flags
  ok        exit 0, and no flag
  crash     anything else: a traceback, another exit code, an ``Error:`` line on success
  hang      the timeout fired
"""

from __future__ import annotations

import contextlib
import csv
import faulthandler
import json
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

OUTCOMES = ("error", "failure", "flagged", "ok")
TIMEOUT_S = 30.0
SUMMARY: dict[str, str] = {}  # case name -> outcome, for the summary line at the end of the test session


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case that runs past its time."""


@dataclass
class Env:
    """Where one case lives: ``tmp`` (its own folder), ``base`` (shared inputs and artifacts, read-only), ``out`` (its
    results file) and ``cache`` (its prepare cache)."""

    tmp: Path
    base: Any

    @property
    def out(self) -> Path:
        return self.tmp / "results.jsonl"

    @property
    def cache(self) -> Path:
        return self.tmp / "cache"


@dataclass(frozen=True)
class Case:
    """One row of the matrix. ``argv(env)`` builds the case's files under env.tmp and returns the CLI arguments;
    ``needle`` must appear in what the outcome reports (the Error line, a failure record's error and message, or the
    QC flags); ``check(env, run)`` asserts anything else (e.g. that nothing was cached)."""

    name: str
    argv: Any
    expect: str
    needle: str = ""
    check: Any = None

    def __post_init__(self) -> None:
        if self.expect not in OUTCOMES:
            raise ValueError(f"{self.name}: expect={self.expect!r} is not one of {OUTCOMES}")


@dataclass
class Run:
    exit_code: int | None
    output: str = ""
    stderr: str = ""
    exception: BaseException | None = None
    exc_text: str = ""
    timed_out: bool = False
    seconds: float = 0.0
    records: list[dict] = field(default_factory=list)


_BUILT: dict[str, Any] = {}


@contextlib.contextmanager
def _command_built_once(app):
    """typer's CliRunner turns the app into a click command on every invoke, most of a small case's time; the app
    never changes here, so build it once (where this typer keeps that step in ``typer.testing._get_command``)."""
    import typer.testing as typer_testing

    real = getattr(typer_testing, "_get_command", None)
    if real is None:
        yield
        return
    if "command" not in _BUILT:
        _BUILT["command"] = real(app)
    typer_testing._get_command = lambda _app: _BUILT["command"]
    try:
        yield
    finally:
        typer_testing._get_command = real


def invoke(argv: list[str], *, timeout_s: float = TIMEOUT_S) -> Run:
    """Run ``sranet <argv>`` in-process under the timeout."""
    from sranet.cli.main import app

    def alarm(signum, frame):
        raise CaseTimeout(f"still running after {timeout_s:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    faulthandler.dump_traceback_later(3 * timeout_s, exit=True, file=sys.__stderr__)
    t0 = time.perf_counter()
    try:
        with _command_built_once(app):
            result = CliRunner().invoke(app, [str(a) for a in argv])
    except CaseTimeout as exc:
        return Run(None, exception=exc, timed_out=True, seconds=time.perf_counter() - t0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
    exc_text = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc_text = "".join(traceback.format_exception(result.exception))
    return Run(result.exit_code, result.output, getattr(result, "stderr", "") or "", result.exception, exc_text,
               seconds=time.perf_counter() - t0)


def _jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file (lines that are not one, e.g. a bad file a case gave as --out, are skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def classify(run: Run, env: Env) -> tuple[str, str]:
    """(outcome, what it reports): see the module docstring."""
    if run.timed_out:
        return "hang", str(run.exception)
    if run.exc_text:
        return "crash", run.exc_text
    if "Traceback (most recent call last)" in run.output:
        return "crash", run.output
    if run.exit_code == 2 and any(s in run.output for s in ("Invalid value", "No such option", "Missing ")):
        return "error", " ".join(line.strip("│ ") for line in run.output.splitlines() if "│" in line)
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    run.records = _jsonl(env.out)
    failed = [r for r in run.records if "error" in r] + _jsonl(env.cache / "failures.jsonl")
    if run.exit_code == 1:
        if failed:
            return "failure", " | ".join(f"{r['error']}: {r['message']}" for r in failed)
        if len(errors) == 1:
            return "error", errors[0]
        return "crash", f"exit 1 with {len(errors)} 'Error:' lines:\n{run.output}"
    if run.exit_code == 0:
        from sranet.runtime.study import REFUSALS

        refused = [r for r in run.records if r.get("error") in REFUSALS]
        if errors or len(failed) > len(refused):
            return "crash", f"exit 0 with errors:\n{run.output}"
        if refused:
            return "failure", " | ".join(f"{r['error']}: {r['message']}" for r in refused)
        # no_roi marks the mode the matrix runs its crops in (--roi whole), not something found in the input
        flags = [f for r in run.records for f in r.get("qc", []) if f != "no_roi"]
        if (env.cache / "cases.csv").is_file():
            with open(env.cache / "cases.csv", newline="") as fh:
                flags += [f for row in csv.DictReader(fh) for f in row["qc"].split(";") if f]
        if not run.records and not (env.cache / "cases.csv").is_file():
            return "crash", f"exit 0 and nothing written:\n{run.output}"
        return ("flagged", ", ".join(flags)) if flags else ("ok", "")
    return "crash", f"exit code {run.exit_code}:\n{run.output}"


def summary_line() -> str:
    counts = {k: sum(1 for v in SUMMARY.values() if v == k) for k in (*OUTCOMES, "crash", "hang")}
    return (f"robustness: {len(SUMMARY)} cases: {counts['error']} clean errors, {counts['flagged']} flagged "
            f"predictions, {counts['failure']} failure records, {counts['ok']} ok; {counts['crash']} tracebacks or "
            f"unexpected exits, {counts['hang']} hangs")
