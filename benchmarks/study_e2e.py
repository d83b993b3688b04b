"""A study end to end on this CPU: a 512 x 512 x 300 DICOM series read with a ROI, predicted with a ROI, and
predicted whole (both hips found by the localiser), through the header scanner and through pydicom, interleaved.

The series is a whole-pelvis phantom (``generate_pelvis_study``: 0.8 mm pixels, 1 mm slices, both hips) written
as uncompressed explicit VR little endian DICOM by ``sranet.data.dicom_write`` into a temporary folder. The ROI is
a 96 mm cube around the left femoral head's true centre. The model is a seeded random SRANet (``--preset``; the
latency does not depend on the weights) exported for ``--target onnxruntime-cpu``, run by ONNX Runtime on the CPU.

Stages, each timed per call (wall-clock ms):

  load_roi        ``load_volume(series, roi=ROI)``
  predict_roi     ``Predictor.predict(series, roi=ROI)``: load, preprocess, the model, post-processing
  study           ``predict_study(predictor, series)``: the whole series read, both femoral heads located,
                  both hips preprocessed and predicted (one record per hip)

Readers: ``scanner`` is the loader as shipped (``dicom_scan`` reads the common file's header from its bytes and
``dicom_pixels`` reads uncompressed pixels straight from the file); ``pydicom`` is the same loader with the scanner
switched off in this process (``dicom_scan.scan_header`` answering None, so every header and every slice goes
through pydicom, as for a file the scanner leaves to it). The two run alternately, call by call, so load on the
machine hits both alike; ``ratio_pydicom_over_scanner`` compares their medians from that one run.

    .venv/bin/python benchmarks/study_e2e.py                          # paper model, 20 calls per stage and reader
    .venv/bin/python benchmarks/study_e2e.py --preset tiny --repeats 5 --slices 60 --out /tmp/s.json   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
READERS = ("scanner", "pydicom")


@contextlib.contextmanager
def reader(name: str):
    """The loader with the header scanner on (as shipped) or off (every file through pydicom)."""
    from sranet.runtime import dicom_scan

    real = dicom_scan.scan_header
    if name == "pydicom":
        dicom_scan.scan_header = lambda path: None
    try:
        yield
    finally:
        dicom_scan.scan_header = real


def export_model(folder: Path, preset: str) -> Path:
    """``preset`` with seeded random weights (latency does not depend on them), exported by ``sranet export
    --target onnxruntime-cpu``: the graph form that target picks for this model."""
    import torch
    from typer.testing import CliRunner

    from sranet.cli.main import app
    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.model import SRANet
    from sranet.model.checkpoint import save_checkpoint

    cfg = ModelConfig.preset(preset)
    torch.manual_seed(0)
    save_checkpoint(folder / "model.pt", model=SRANet(cfg).eval(), preprocess_config=PreprocessConfig.for_model(cfg),
                    threshold=0.5, epoch=0, metrics={}, train_config={"note": "random init, for latency only"})
    result = CliRunner().invoke(app, ["export", str(folder / "model.pt"), "--out", str(folder / "model.onnx"),
                                      "--target", "onnxruntime-cpu"])
    if result.exit_code != 0:
        raise SystemExit(f"export failed:\n{result.output}")
    return folder / "model.onnx"


def summary(ms: list[float]) -> dict:
    x = np.asarray(ms)
    return {"n": int(x.size), "p50_ms": round(float(np.median(x)), 2), "p90_ms": round(float(np.percentile(x, 90)), 2),
            "min_ms": round(float(x.min()), 2), "samples_ms": [round(float(v), 2) for v in ms]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per stage and reader (after one warm-up)")
    ap.add_argument("--preset", default="paper", choices=["paper", "tiny"])
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: its own choice)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--label", default="", help="a note stored with the result (e.g. 'preliminary: shared machine')")
    ap.add_argument("--out", type=Path, default=RESULTS / "study_e2e.json")
    args = ap.parse_args(argv)

    from sranet.bench.env import collect_environment, machine_label
    from sranet.data.dicom_write import write_dicom_series
    from sranet.data.synthetic_pelvis import generate_pelvis_study
    from sranet.runtime.io import load_volume
    from sranet.runtime.predictor import Predictor
    from sranet.runtime.study import predict_study

    with tempfile.TemporaryDirectory(prefix="sranet-study-e2e-") as tmp:
        tmp = Path(tmp)
        study = generate_pelvis_study(args.seed, preset="512", slices=args.slices, slice_mm=1.0, pixel_mm=0.8,
                                      stages={"L": 2, "R": 0}, patient_position="HFS")
        series = tmp / "series"
        write_dicom_series(study.hu, study.spacing_mm, series, origin_mm=study.origin_mm, direction=study.direction,
                           patient_position=study.patient_position)
        centre = np.asarray(study.hips["L"].centre_mm, dtype=float)
        roi = "mm:" + ",".join(f"{c - 48:.1f}:{c + 48:.1f}" for c in centre)
        onnx = export_model(tmp, args.preset)
        predictor = Predictor.from_artifact(onnx, threads=args.threads)
        stages = {
            "load_roi": lambda: load_volume(series, roi=roi),
            "predict_roi": lambda: predictor.predict(series, roi=roi),
            "study": lambda: predict_study(predictor, series, case_id="bench"),
        }
        checks: dict = {}
        times = {stage: {r: [] for r in READERS} for stage in stages}
        load_before = os.getloadavg()
        for stage, fn in stages.items():
            for name in READERS:  # warm-up, and the answers each reader gives (they must agree)
                with reader(name):
                    checks.setdefault(stage, {})[name] = describe(stage, fn())
            for _ in range(args.repeats):
                for name in READERS:
                    with reader(name):
                        t = time.perf_counter()
                        fn()
                        times[stage][name].append((time.perf_counter() - t) * 1e3)
            print(f"{stage:12s} " + "  ".join(f"{n} p50 {np.median(times[stage][n]):7.1f} ms" for n in READERS),
                  file=sys.stderr)
        load_after = os.getloadavg()
        predictor.close()
    same = {stage: c["scanner"] == c["pydicom"] for stage, c in checks.items()}
    env = collect_environment()
    result = {
        "benchmark": "study_e2e",
        "label": args.label,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_label(env),
        "environment": env,
        "platform": platform.platform(),
        "load_average_1_5_15": {"before": list(load_before), "after": list(load_after)},
        "series": {"slices": args.slices, "size": [512, 512], "pixel_mm": 0.8, "slice_mm": 1.0,
                   "transfer_syntax": "explicit VR little endian (uncompressed)", "writer": "sranet.data.dicom_write"},
        "roi": roi,
        "model": {"preset": args.preset, "runtime": "onnxruntime (CPU)", "threads": args.threads,
                  "weights": "seeded random (latency only)"},
        "repeats": args.repeats,
        "stages": {stage: {name: summary(times[stage][name]) for name in READERS} | {
            "ratio_pydicom_over_scanner": round(float(np.median(times[stage]["pydicom"]) /
                                                      np.median(times[stage]["scanner"])), 2)} for stage in stages},
        "answers": checks,
        "readers_agree": same,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({result['machine']}); readers agree: {same}", file=sys.stderr)
    return 0 if all(same.values()) else 1


def describe(stage: str, out) -> dict:
    """What a stage answered, compactly, so the two readers' answers can be compared."""
    if stage == "load_roi":
        return {"shape": list(out.shape), "dtype": str(out.hu.dtype), "sum": float(out.hu.astype(np.float64).sum()),
                "origin_mm": [round(v, 4) for v in out.origin_mm], "qc": list(out.qc)}
    if stage == "predict_roi":
        return {"probability": round(float(out.probability), 6), "qc": list(out.qc)}
    return {r["case"]: {"ok": "error" not in r, "probability": None if "error" in r else round(float(r["probability"]), 6)}
            for r in out}


if __name__ == "__main__":
    raise SystemExit(main())
