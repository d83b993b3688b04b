"""Batch throughput: studies/s of ``predict_batch`` over whole studies, per read-ahead (``prefetch``) setting.

``sranet benchmark --study S ... --prefetch 0,1`` runs it with the first artifact after the latency runs
(``sranet.bench.runner.run_benchmark``); the block goes into the document under ``throughput``.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sranet.bench.runner import Settings
from sranet.errors import InputError


@dataclass(frozen=True)
class Throughput:
    """The batch-throughput run: ``studies`` (inputs as ``sranet predict`` takes them; whole studies unless they are
    crops) predicted ``rounds`` times for each ``prefetch`` setting (inputs read ahead while the model runs), the
    settings interleaved within each round; the first setting is the baseline of the ratios."""

    studies: tuple[str, ...]
    prefetch: tuple[int, ...] = (0, 1)
    rounds: int = 2

    def __post_init__(self) -> None:
        if not self.studies:
            raise InputError("the throughput run needs at least one input (--study).")
        if not self.prefetch or any(not isinstance(p, int) or p < 0 for p in self.prefetch):
            raise InputError(f"--prefetch must list integers >= 0, got {self.prefetch!r}. Example: --prefetch 0,1")
        if self.rounds < 1:
            raise InputError(f"--throughput-rounds must be >= 1, got {self.rounds}.")


def time_batch(predictor, cases: list, out: Path, prefetch: int) -> dict[str, Any]:
    """One timed ``predict_batch`` of ``cases`` into a fresh ``out``: wall time, studies/s, what it predicted, and
    the median of each stage over its records (read, locate, preprocess, infer, post; ms)."""
    from sranet.runtime.batch import predict_batch

    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    summary = predict_batch(predictor, cases, out, prefetch=prefetch)
    wall = time.perf_counter() - t0
    stages: dict[str, list[float]] = {}
    for line in out.read_text().splitlines():
        for k, v in json.loads(line).get("timings_ms", {}).items():
            stages.setdefault(k, []).append(v)
    return {"prefetch": prefetch, "wall_s": wall, "studies_per_s": len(cases) / wall, "predicted": summary.predicted,
            "refused": summary.refused, "failed": summary.failed,
            "stage_p50_ms": {k: statistics.median(v) for k, v in stages.items()}}


def compare_runs(runs: list[dict[str, Any]], key: str, values: list) -> list[dict[str, Any]]:
    """Per value of ``runs[i][key]`` (in ``values`` order; the first is the baseline): the median studies/s and the
    ratio to the baseline's run of the same ``round``, per round and their median."""
    out = []
    for value in values:
        mine = [r for r in runs if r[key] == value]
        ratios = [r["studies_per_s"] / next(b["studies_per_s"] for b in runs
                                            if b["round"] == r["round"] and b[key] == values[0]) for r in mine]
        out.append({key: value, "studies_per_s_median": statistics.median(r["studies_per_s"] for r in mine),
                    "ratio_vs_first_by_round": ratios, "ratio_vs_first_median": statistics.median(ratios)})
    return out


def throughput_block(path: str | os.PathLike, spec: Throughput, settings: Settings) -> dict[str, Any]:
    """Studies/s of ``predict_batch`` over ``spec.studies`` with ``path``, per prefetch setting: each run's wall time
    and what it predicted, the median per setting and its ratio to the first setting within each round. Results are
    written to a temporary file, removed afterwards."""
    from sranet.runtime.batch import cases_from
    from sranet.runtime.predictor import Predictor

    cases = cases_from(spec.studies)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sranet-throughput-") as tmp, \
            Predictor.from_artifact(path, device=settings.device, threads=settings.threads,
                                    **({"provider": settings.provider} if settings.provider else {})) as predictor:
        out = Path(tmp) / "results.jsonl"
        time_batch(predictor, cases[:1], out, 0)  # warm-up: first-call costs
        for round_ in range(spec.rounds):
            for prefetch in spec.prefetch:
                runs.append({"round": round_, **time_batch(predictor, cases, out, prefetch)})
    return {"artifact": 0, "inputs": len(cases), "rounds": spec.rounds, "baseline_prefetch": spec.prefetch[0],
            "results": compare_runs(runs, "prefetch", list(spec.prefetch)), "runs": runs}
