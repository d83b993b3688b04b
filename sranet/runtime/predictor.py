"""``Predictor``: artifact in, findings out. Everything it needs (preprocessing, threshold) comes from the artifact.

One case: read (``load_volume``) -> preprocess (the artifact's ``PreprocessConfig``) -> infer (any backend) -> post
(decision at the stored threshold, the (P, P, P) attention grid, the top patches' centres mapped back to the source
volume's voxels and to patient LPS millimetres through the ``ResamplePlan`` and the volume's affine).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sranet.errors import InputError, SranetError, check_choice
from sranet.runtime.artifact import ArtifactInfo, sha256_file
from sranet.runtime.backends.base import Backend, open_backend
from sranet.runtime.patches import patch_centres
from sranet.runtime.results import case_key
from sranet.runtime.volume import Volume

PREPROCESS_DEVICES = ("cpu", "gpu")
ROI_SOURCES = ("auto", "manual", "manifest", "whole")


@dataclass
class CaseInput:
    """One case to predict: a path (DICOM folder/file, NIfTI, npy) or an already loaded Volume.

    roi_source says where the ROI comes from: "manual" (given with the case, ``--roi``), "manifest" (the manifest
    row's ``roi``), "whole" (no ROI: the whole volume is the crop, flagged ``no_roi``) or "auto": without a ROI, a
    whole study whose femoral heads ``sranet.runtime.study`` finds (``side`` then limits it to one hip); with one,
    a hip whose ROI the localiser found. None: "manual" when ``roi`` is given, else "whole".
    """

    source: str | os.PathLike | Volume
    case_id: str | None = None
    roi: Any = None  # ROI text ("d0:d1,h0:h1,w0:w1" or "mm:...") or a parsed Roi
    series: str | None = None
    spacing_mm: tuple[float, float, float] | None = None  # .npy inputs without a JSON sidecar
    roi_source: str | None = None
    side: str | None = None  # with roi_source "auto": only this hip ("L" / "R")
    max_gib: float | None = None  # memory budget of the read (load_volume's max_gib; None: its default)

    def __post_init__(self) -> None:
        if self.roi_source is None:
            self.roi_source = "whole" if self.roi is None else "manual"
        check_choice("roi_source", self.roi_source, ROI_SOURCES, InputError)
        if self.side not in (None, "L", "R"):
            raise InputError(f"side={self.side!r} is not 'L', 'R' or None.")

    @functools.cached_property
    def key(self) -> str:
        """The case id (sanitised); else a hash of the input path; for an in-memory Volume with neither, a hash of
        its voxels and spacing (computed once per case), so reruns of the same data get the same key."""
        if isinstance(self.source, Volume) and not self.case_id and not self.source.source:
            import hashlib

            digest = hashlib.sha256(np.ascontiguousarray(self.source.hu).tobytes())
            digest.update(repr(tuple(self.source.spacing_mm)).encode())
            return "volume-" + digest.hexdigest()[:12]
        path = self.source.source if isinstance(self.source, Volume) else self.source
        return case_key(self.case_id, path or None)


@dataclass
class Prediction:
    """What the model says about one case.

    attention       (P, P, P) float32 weights in (D, H, W) order; patch n = P*P*i + P*j + k; they sum to 1.
    top_patches     the k highest-weighted patches, each with its centre in prepared-volume voxels (S^3 grid), in
                    source-volume voxels (d, h, w, fractional) and in patient LPS millimetres.
    timings_ms      wall time per stage: read, preprocess, infer (the case's share of its batch), post.
    volume, prepared are kept for heatmaps; they are not written to results.
    """

    case: str
    source: str
    probability: float
    decision: bool
    threshold: float
    attention: np.ndarray
    top_patches: list[dict[str, Any]]
    qc: list[str]
    timings_ms: dict[str, float]
    model_sha256: str
    batch_size: int = 1
    side: str | None = None  # "L" / "R" where the ROI says which hip; None otherwise
    roi_source: str = "manual"  # CaseInput.roi_source
    roi: str | None = None  # the ROI's text form; None for the whole volume
    localiser: dict[str, Any] | None = None  # roi_source "auto": the head found (centre, radius, confidence, qc)
    input: str | None = None  # the key of the input (a whole study) this hip came from
    volume: Volume | None = field(default=None, repr=False)
    prepared: Any = field(default=None, repr=False)

    def to_record(self) -> dict[str, Any]:
        """JSON-able dict for one results line (no arrays of the volume, no patient identifiers)."""
        from sranet import __version__

        record: dict[str, Any] = {"case": self.case}
        if self.input is not None:
            record["input"] = self.input
        record.update({
            "source": self.source,
            "side": self.side,
            "roi_source": self.roi_source,
            "roi": self.roi,
        })
        if self.localiser is not None:
            record["localiser"] = self.localiser
        return {
            **record,
            "probability": round(float(self.probability), 6),
            "decision": bool(self.decision),
            "threshold": float(self.threshold),
            "attention_grid": np.round(self.attention.astype(float), 6).tolist(),
            "top_patches": self.top_patches,
            "qc": list(self.qc),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "batch_size": self.batch_size,
            "model_sha256": self.model_sha256,
            "sranet_version": __version__,
        }


@dataclass
class PreparedCase:
    """One case read and preprocessed: its input, the volume, the ``Prepared`` network input and stage times."""

    case: CaseInput
    volume: Volume
    prepared: Any
    timings_ms: dict[str, float]
    extra_qc: list[str] = field(default_factory=list)  # flags from outside the volume (the localiser's)
    localiser: dict[str, Any] | None = None  # the femoral head this hip's ROI came from (roi_source "auto")
    input: str | None = None  # the key of the whole-study input this hip belongs to


class Predictor:
    """Run an artifact on CT volumes. Build it with ``Predictor.from_artifact(path, device=..., ...)``.

    The work for a case comes in two steps: ``prepare`` (read and preprocess, on the CPU or with CuPy) and ``run``
    (one backend call for a batch of prepared cases, then post-processing). ``predict_many`` drives both over an
    iterable of cases; ``predict_prepared`` takes prepared cases from any source, so a loader that prepares ahead
    (threads, processes) feeds it without changing the rest.
    """

    def __init__(self, backend: Backend, *, top_k: int = 3, model_sha256: str | None = None,
                 preprocess_on: str = "cpu"):
        """``preprocess_on``: "cpu" (numpy, the reference) or "gpu" (CuPy: same plan, resample and z-score on the GPU;
        needs CuPy and a CUDA GPU, checked here rather than at the first case)."""
        if not isinstance(top_k, int) or top_k < 1:
            raise InputError(f"top_k={top_k!r} must be a positive integer.")
        check_choice("preprocess_on", preprocess_on, PREPROCESS_DEVICES, InputError)
        if preprocess_on == "gpu":
            from sranet.runtime.cuda_buffers import import_cupy

            import_cupy()  # DependencyMissingError / BackendError now, not once per case
        self.preprocess_on = preprocess_on
        self.backend = backend
        self.info: ArtifactInfo = backend.info
        self.top_k = min(top_k, self.info.model.num_patches)
        self.model_sha256 = model_sha256 if model_sha256 is not None else sha256_file(backend.path)

    @classmethod
    def from_artifact(cls, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None,
                      cuda_graphs: bool = False, max_batch: int | None = None, top_k: int = 3,
                      preprocess_on: str = "cpu", **backend_options: Any) -> Predictor:
        """Open ``path`` (.onnx, .pt, .engine/.plan) with the backend its suffix names: ``device``, ``threads``,
        ``cuda_graphs``, ``max_batch`` and ``backend_options`` as ``open_backend`` takes them."""
        backend = open_backend(path, device=device, threads=threads, cuda_graphs=cuda_graphs, max_batch=max_batch,
                               **backend_options)
        try:
            return cls(backend, top_k=top_k, preprocess_on=preprocess_on)
        except BaseException:
            backend.close()
            raise

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one case -----------------------------------------------------------------------------------------------
    def predict(self, source: str | os.PathLike | Volume, roi: Any = None, *, series: str | None = None,
                case_id: str | None = None) -> Prediction:
        """Predict one case. ``source``: a path or a Volume ((D, H, W) HU with geometry). Raises SranetError.

        Without ``roi`` the whole volume is the crop (flagged ``no_roi``); a whole study, whose femoral heads are to
        be found first, goes through ``sranet.runtime.study.predict_study``."""
        prepared = self.prepare(CaseInput(source, case_id=case_id, roi=roi, series=series))
        return self.run([prepared])[0]

    # -- many cases ---------------------------------------------------------------------------------------------
    def predict_many(self, cases: Iterable[CaseInput], *, batch: int = 1) -> Iterator[tuple[CaseInput, Prediction | Exception]]:
        """Yield ``(case, Prediction)`` or ``(case, exception)`` in input order; one backend call per batch of cases.

        A case that fails to read or preprocess (any exception but ImportError) is yielded with its error and the
        others go on. If a batch fails in the backend, its cases are retried one by one so one bad case does not
        sink its neighbours.
        """
        return self.predict_prepared(self.prepare_each(cases), batch=batch)

    def prepare_each(self, cases: Iterable[CaseInput]) -> Iterator[tuple[CaseInput, PreparedCase | Exception]]:
        """``prepare`` each case in turn: ``(case, PreparedCase)`` or ``(case, exception)``. A missing package
        (ImportError) fails every case, so it stops the run instead."""
        for case in cases:
            try:
                yield case, self.prepare(case)
            except ImportError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure is recorded against its case; the run goes on
                yield case, exc

    def predict_prepared(self, prepared: Iterable[tuple[CaseInput, PreparedCase | Exception]], *,
                         batch: int = 1) -> Iterator[tuple[CaseInput, Prediction | Exception]]:
        """``predict_many`` for cases already prepared (``prepare_each`` or a loader that prepares ahead)."""
        if not isinstance(batch, int) or batch < 1:
            raise InputError(f"batch={batch!r} must be a positive integer.")
        if self.backend.max_batch is not None:
            batch = min(batch, self.backend.max_batch)
        pending: list[PreparedCase] = []
        for case, item in prepared:
            if isinstance(item, Exception):
                yield from self._flush(pending)
                pending = []
                yield case, item
                continue
            pending.append(item)
            if len(pending) >= batch:
                yield from self._flush(pending)
                pending = []
        yield from self._flush(pending)

    def _flush(self, pending: list[PreparedCase]) -> Iterator[tuple[CaseInput, Prediction | Exception]]:
        if not pending:
            return
        try:
            results = self.run(pending)
        except ImportError:
            raise
        except Exception as exc:  # noqa: BLE001
            if len(pending) == 1:
                yield pending[0].case, exc
            else:  # retry one by one, so one bad case does not sink its neighbours
                for p in pending:
                    yield from self._flush([p])
            return
        for p, r in zip(pending, results, strict=True):
            yield p.case, r

    # -- stages ---------------------------------------------------------------------------------------------------
    def prepare(self, case: CaseInput) -> PreparedCase:
        """Read and preprocess one case (the artifact's PreprocessConfig): the network input and what post-processing
        needs. Raises SranetError (or another exception) for a case that cannot be read.

        A case with ``roi_source="auto"`` (a whole study, one finding per hip) goes through
        ``sranet.runtime.study.predict_cases`` instead."""
        if case.roi_source == "auto" and case.roi is None:
            raise InputError("a case with roi_source='auto' is a whole study: predict it with "
                             "sranet.runtime.study.predict_cases (or predict_study), which finds the hips first.")
        t0 = time.perf_counter()
        roi = case.roi
        if isinstance(roi, str):
            from sranet.runtime.roi import parse_roi

            roi = parse_roi(roi)
        if isinstance(case.source, Volume):
            volume = case.source
        else:
            from sranet.runtime.io import load_volume

            # with a ROI, only the slices it needs are decoded
            volume = load_volume(case.source, roi=roi, series=case.series, spacing_mm=case.spacing_mm,
                                 max_gib=case.max_gib)
        return self.prepare_volume(case, volume, roi, {"read": (time.perf_counter() - t0) * 1e3})

    def prepare_volume(self, case: CaseInput, volume: Volume, roi: Any, timings_ms: dict[str, float]) -> PreparedCase:
        """Preprocess ``volume`` (already read) inside ``roi`` (a parsed Roi, or None for the whole volume) for
        ``case``; ``timings_ms`` (the read's stages) is extended with "preprocess". A ROI in millimetres is cut
        out first (``sranet.runtime.roi_crop.crop_roi``): padded, and flagged ``roi_truncated``, where it reaches
        past the scan, so the head keeps its place and scale in the network input."""
        t1 = time.perf_counter()
        if roi is not None and roi.units == "mm":
            from sranet.runtime.roi_crop import crop_roi

            volume, _ = crop_roi(volume, roi, self.info.preprocess.pad_value_hu)
        if self.preprocess_on == "gpu":
            from sranet.runtime.preprocess_gpu import preprocess_gpu

            gpu = self.backend.device.index if self.backend.device.kind == "cuda" else 0
            prepared = preprocess_gpu(volume, self.info.preprocess, roi=roi, device=gpu)
        else:
            from sranet.runtime.preprocess import preprocess

            prepared = preprocess(volume, self.info.preprocess, roi=roi)
        t2 = time.perf_counter()
        S = self.info.model.input_size
        if prepared.input.shape != (S, S, S):
            raise InputError(
                f"preprocessing gave shape {prepared.input.shape}, but the model takes ({S}, {S}, {S}).",
                path=volume.source or None, hint="The artifact's preprocess and model configs disagree; re-export it.")
        return PreparedCase(case, volume, prepared, {**timings_ms, "preprocess": (t2 - t1) * 1e3})

    def run(self, batch: list[PreparedCase]) -> list[Prediction]:
        """One backend call for ``batch`` (stacked to (B, 1, S, S, S)), then post-processing of each case."""
        ct = np.stack([p.prepared.input for p in batch])[:, None].astype(np.float32, copy=False)  # (B, 1, S, S, S)
        t0 = time.perf_counter()
        out = self.backend.infer(ct)
        infer_ms = (time.perf_counter() - t0) * 1e3 / len(batch)
        results = []
        for n, p in enumerate(batch):
            t1 = time.perf_counter()
            result = self._postprocess(p, float(out["prob"][n]), out["attention"][n], len(batch))
            result.timings_ms = {**p.timings_ms, "infer": infer_ms, "post": (time.perf_counter() - t1) * 1e3}
            results.append(result)
        return results

    def _postprocess(self, p: PreparedCase, prob: float, attention: np.ndarray, batch_size: int) -> Prediction:
        grid = self.info.model.grid
        grid_att = np.asarray(attention, dtype=np.float32).reshape(grid, grid, grid)  # (P, P, P) in (D, H, W)
        qc = list(dict.fromkeys([*p.volume.qc, *getattr(p.prepared, "qc", []), *p.extra_qc]))
        if p.case.roi is None:
            qc.append("no_roi")  # the whole volume was the crop: nothing says a femoral head is in it
        if not np.isfinite(prob) or not np.isfinite(grid_att).all():
            raise SranetError("the model returned NaN or infinite outputs.", path=p.volume.source or None)
        return Prediction(
            case=p.case.key,
            source=display_source(p.case.source),
            probability=prob,
            decision=prob >= self.info.threshold,
            threshold=self.info.threshold,
            attention=grid_att,
            top_patches=top_patches(grid_att, self.top_k, self.info.model.input_size, p.prepared.plan, p.volume),
            qc=qc,
            timings_ms={},
            model_sha256=self.model_sha256,
            batch_size=batch_size,
            side=getattr(p.case.roi, "side", None) or p.case.side,
            roi_source=p.case.roi_source,
            roi=_roi_text(p.case.roi),
            localiser=p.localiser,
            input=p.input,
            volume=p.volume,
            prepared=p.prepared,
        )


def top_patches(attention: np.ndarray, k: int, input_size: int, plan: Any, volume: Volume) -> list[dict[str, Any]]:
    """The k highest weights of a (P, P, P) attention grid, with centres in prepared voxels, source voxels, LPS mm.

    Source voxel = plan.offset + plan.scale * prepared voxel (the ResamplePlan contract), reported in the full
    series' indices (plus ``volume.index_offset`` when only part of the series was loaded); mm = volume affine.
    """
    grid = attention.shape[0]
    flat = attention.reshape(-1)
    order = np.argsort(-flat, kind="stable")[:k]
    centres = patch_centres(grid, input_size)[order]  # (k, 3)
    source = np.asarray(plan.offset, dtype=float) + np.asarray(plan.scale, dtype=float) * centres
    mm = volume.index_to_patient(source)  # array-local indices -> LPS mm
    source = source + np.asarray(getattr(volume, "index_offset", (0, 0, 0)), dtype=float)
    out = []
    for rank, n in enumerate(order):
        out.append({
            "rank": rank + 1,
            "patch": int(n),
            "grid_index": [int(v) for v in np.unravel_index(int(n), (grid,) * 3)],
            "weight": round(float(flat[n]), 6),
            "prepared_voxel": [round(float(v), 2) for v in centres[rank]],
            "source_voxel": [round(float(v), 2) for v in source[rank]],
            "patient_mm": [round(float(v), 2) for v in mm[rank]],
        })
    return out


def _roi_text(roi: Any) -> str | None:
    """A ROI as results show it: its text form ("d0:d1,..." or "mm:..."), None without one."""
    if roi is None:
        return None
    return roi if isinstance(roi, str) else roi.text()


def display_source(source: Any) -> str:
    """How a case's input is named in results: the path as given, or the file name a Volume was read from."""
    if isinstance(source, Volume):
        return os.path.basename(source.source) if source.source else "<volume>"
    return os.fspath(Path(source))
