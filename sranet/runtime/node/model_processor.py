"""The node's default processor: localise and predict each hip of the study's CT series with a model artifact, and
turn the findings into the study's DICOM objects (SR, one attention Parametric Map per assessed hip and, unless
turned off, a Secondary Capture of the overview).

    processor = ModelProcessor("model.onnx", workers=2)      # opens the artifact once per worker, checked first
    DicomNode(config, processor).serve_forever()

Per round (a folder of received instances): choose the series (``sranet.runtime.node.series``), run
``predict_study_outcome`` on it (the same records ``sranet predict`` writes for that study), convert the in-memory
result with ``sranet.runtime.dicom_out.study_findings`` and build the objects. A study that cannot be read at all
raises (the round fails, its instances stay in ``failed/``); a hip without a femoral head, or with metal near it, is
an answer: the SR says it was not assessed and why.
"""

from __future__ import annotations

import os
import queue
import tempfile
import time
from pathlib import Path
from typing import Any

from sranet.errors import InputError
from sranet.runtime.node.node import StudyResult

CASE_ID = "study"  # the key of every study's records and pictures in the node (never a tag's value)


def default_threads(workers: int) -> int:
    """Inference threads per worker when none are given: the CPUs shared among the workers (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))


class ModelProcessor:
    """``folder -> StudyResult`` with ``workers`` predictors of one artifact, opened (and integrity-checked) here.

    artifact       .onnx, .pt, .engine/.plan, .xml: what ``Predictor.from_artifact`` opens.
    workers        predictors to open: one per node worker, so that rounds processed at the same time never wait
                   on each other's model.
    device, threads, trusted_keys, top_k, backend_options   as ``Predictor.from_artifact`` takes them (threads
                   None: ``default_threads(workers)``).
    predict_metal  predict a hip with metal near its head too (flagged) instead of refusing it.
    overview       add a Secondary Capture of the overview picture (coronal slice with each hip's box, then each
                   hip's attention panels).
    max_gib        memory budget of one study's read (``load_volume``'s ``max_gib``).
    """

    def __init__(self, artifact: str | os.PathLike, *, workers: int = 1, device: str = "cpu",
                 threads: int | None = None, trusted_keys=None, top_k: int = 3, predict_metal: bool = False,
                 overview: bool = True, max_gib: float | None = None, **backend_options: Any):
        from sranet.runtime.dicom_out.from_results import algorithm_info
        from sranet.runtime.dicom_out.writer import require_highdicom
        from sranet.runtime.predictor import Predictor

        require_highdicom()
        if int(workers) < 1:
            raise InputError(f"workers={workers!r} must be at least 1.")
        threads = default_threads(workers) if threads is None else threads
        self.predict_metal, self.overview, self.max_gib = predict_metal, overview, max_gib
        self._pool: queue.Queue = queue.Queue()
        self._predictors = []
        try:
            for _ in range(int(workers)):
                predictor = Predictor.from_artifact(artifact, device=device, threads=threads, top_k=top_k,
                                                    trusted_keys=trusted_keys, **backend_options)
                self._predictors.append(predictor)
                self._pool.put(predictor)
        except BaseException:
            self.close()
            raise
        self.algorithm = algorithm_info(self._predictors[0])
        self.info = self._predictors[0].info

    def close(self) -> None:
        for predictor in self._predictors:
            predictor.close()
        self._predictors = []

    def __enter__(self) -> ModelProcessor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, folder: Path) -> StudyResult:
        from sranet.runtime.dicom_out.from_results import study_findings
        from sranet.runtime.dicom_out.writer import build_dicom_outputs
        from sranet.runtime.node.series import choose_series
        from sranet.runtime.study import predict_study_outcome

        t0 = time.perf_counter()
        choice = choose_series(folder)
        t1 = time.perf_counter()
        predictor = self._pool.get()
        try:
            with tempfile.TemporaryDirectory(prefix="sranet-overview-") as pictures:
                outcome = predict_study_outcome(
                    predictor, choice.path, case_id=CASE_ID, series=choice.series, predict_metal=self.predict_metal,
                    heatmaps=pictures if self.overview else None, max_gib=self.max_gib)
                if isinstance(outcome.prediction, BaseException):
                    raise outcome.prediction  # the study cannot be read: the round fails, its instances are kept
                t2 = time.perf_counter()
                png = next((r["heatmaps"]["png"] for r in outcome.records if r.get("heatmaps", {}).get("png")), None)
                outputs = build_dicom_outputs(choice.source, study_findings(outcome.prediction), self.algorithm,
                                              overview_png=png)
        finally:
            self._pool.put(predictor)
        t3 = time.perf_counter()
        summary = {"series": choice.summary(), "hips": _hips(outcome.records),
                   "outputs": [o.role for o in outputs],
                   "timings_ms": {"choose_series": round((t1 - t0) * 1e3, 1), "predict": round((t2 - t1) * 1e3, 1),
                                  "build_outputs": round((t3 - t2) * 1e3, 1), **_stages(outcome.records)}}
        return StudyResult([o.dataset for o in outputs], summary)


def _hips(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per side what the health line shows: probability and decision, or what stood instead (its error type)."""
    out = {}
    for r in records:
        if "error" in r:
            out[r["side"]] = {"not_assessed": r["error"]}
        else:
            out[r["side"]] = {"probability": r["probability"], "decision": r["decision"], "qc": r["qc"]}
    return out


def _stages(records: list[dict[str, Any]]) -> dict[str, float]:
    """The study's read and locate times (shared by its hips), from its records."""
    for r in records:
        t = r.get("timings_ms") or {}
        if "read" in t:
            return {"read": round(t["read"], 1), "locate": round(t.get("locate", 0.0), 1)}
    return {}


__all__ = ["CASE_ID", "ModelProcessor", "default_threads"]
