"""The cost of each preprocessing stage on a realistic 512 x 512 x N CT series, with the runtime's own functions.

The series is synthesised on disk from a real CT slice (tests/data/realct/pydicom/CT_small.dcm, upsampled to
512 x 512; 0.78 mm pixels, 1 mm slices, new UIDs, no patient data), uncompressed unless --compress is given.
Stages (``sranet.bench.e2e.load_dicom_by_stage``, the split ``sranet benchmark`` uses): scan (header-only read of
every file, ``scan_folder``), read (``read_dataset``), decode (``decode_pixels``), hu (``to_hu``), stack
(``build_volume``: geometry and assembly, pixels already decoded, and the QC flags ``load_volume`` adds); then plan
(``plan_resample``), resample, normalize. ``load_volume`` is also timed whole, with and without a 96 mm
femoral-head ROI (with a ROI only the slices the box needs are decoded). Files are in the page cache after
the first repeat; the first repeat is reported apart as ``first_repeat_ms``.

    .venv/bin/python benchmarks/preprocess_stages.py               # 300 slices, 5 repeats: ~1-2 minutes
    .venv/bin/python benchmarks/preprocess_stages.py --quick       # 24 slices, 2 repeats: seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
TEMPLATE = ROOT / "tests" / "data" / "realct" / "pydicom" / "CT_small.dcm"


def synthesise_series(folder: Path, n_slices: int, size: int = 512, pixel_mm: float = 0.78, slice_mm: float = 1.0,
                      compress: str = "none") -> Path:
    """Write ``n_slices`` CT slices of ``size`` x ``size`` made from TEMPLATE into ``folder``; returns the folder."""
    import cv2
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

    base = pydicom.dcmread(TEMPLATE)
    img = cv2.resize(base.pixel_array.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_slices):
        ds = pydicom.dcmread(TEMPLATE)
        for tag in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "ReferringPhysicianName",
                    "AccessionNumber", "StudyID", "OtherPatientIDs"):
            if tag in ds:
                setattr(ds, tag, "SYNTHETIC" if tag in ("PatientName", "PatientID") else "")
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesDescription = "sranet synthetic benchmark series"
        ds.InstanceNumber = i + 1
        ds.Rows = ds.Columns = size
        ds.PixelSpacing = [pixel_mm, pixel_mm]
        ds.SliceThickness = slice_mm
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-size * pixel_mm / 2, -size * pixel_mm / 2, -i * slice_mm]
        ds.SliceLocation = -i * slice_mm
        pixels = np.roll(img, (i % 16) - 8, axis=1).astype(np.int16)  # vary slices a little
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = pixels.tobytes()
        if compress == "rle":
            ds.compress(RLELossless, pixels)
        elif compress == "j2k":
            ds.compress(JPEG2000Lossless, pixels)
        ds.save_as(folder / f"slice_{i:04d}.dcm", enforce_file_format=True)
    return folder


def time_stages(folder: Path, cfg, roi_text: str) -> dict[str, float]:
    """One pass over every stage; returns stage -> ms."""
    from sranet.bench.e2e import load_dicom_by_stage
    from sranet.runtime.io import load_volume
    from sranet.runtime.preprocess import normalize, plan_resample, resample
    from sranet.runtime.roi import parse_roi

    t: dict[str, float] = {}
    clock = time.perf_counter
    volume = load_dicom_by_stage(folder, t)  # scan, read, decode, hu, stack (with the QC flags), as sranet benchmark
    t = {k[:-3]: v for k, v in t.items()}
    t0 = clock()
    plan = plan_resample(volume, cfg)
    t["plan"] = (clock() - t0) * 1e3
    t0 = clock()
    hu = resample(volume.hu, plan, cfg)
    t["resample"] = (clock() - t0) * 1e3
    t0 = clock()
    normalize(hu, cfg)
    t["normalize"] = (clock() - t0) * 1e3
    t0 = clock()
    load_volume(folder)
    t["load_volume_full"] = (clock() - t0) * 1e3
    roi = parse_roi(roi_text)
    t0 = clock()
    v = load_volume(folder, roi=roi)
    t["load_volume_roi"] = (clock() - t0) * 1e3
    t0 = clock()
    p = plan_resample(v, cfg, roi=roi)
    normalize(resample(v.hu, p, cfg), cfg)
    t["preprocess_roi"] = (clock() - t0) * 1e3
    return t


def main(argv: list[str] | None = None) -> dict:
    from sranet.bench.env import collect_environment
    from sranet.bench.stats import summarize
    from sranet.config import PreprocessConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compress", choices=("none", "rle", "j2k"), default="none")
    ap.add_argument("--output-size", type=int, default=128)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "preprocess_stages.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.slices, args.repeats = min(args.slices, 24), 2
    cfg = PreprocessConfig(output_size=args.output_size)
    D, size, px = args.slices, 512, 0.78
    half_d, half_hw = min(D // 2, 48), int(48 / px)  # 96 mm box around the series centre
    roi_text = f"{D // 2 - half_d}:{D // 2 + half_d},{size // 2 - half_hw}:{size // 2 + half_hw}," \
               f"{size // 2 - half_hw}:{size // 2 + half_hw}"
    with tempfile.TemporaryDirectory(prefix="sranet-series-") as tmp:
        t0 = time.perf_counter()
        folder = synthesise_series(Path(tmp) / "series", D, size, px, compress=args.compress)
        print(f"wrote {D} slices in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        runs = []
        for r in range(args.repeats):
            runs.append(time_stages(folder, cfg, roi_text))
            print(f"repeat {r + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in runs[-1].items()), file=sys.stderr)
        disk_mib = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    stages = list(runs[0])
    steady = runs[1:] if len(runs) > 1 else runs
    doc = {
        "schema": "sranet-preprocess-stages/1",
        "environment": collect_environment(argv=["benchmarks/preprocess_stages.py", *(argv if argv is not None else sys.argv[1:])]),
        "series": {"shape": [D, size, size], "pixel_mm": px, "slice_mm": 1.0, "compress": args.compress,
                   "disk_mib": round(disk_mib, 1), "template": str(TEMPLATE.relative_to(ROOT)), "roi": roi_text},
        "preprocess_config": cfg.to_dict(),
        "repeats": args.repeats,
        "note": "steady-state statistics exclude the first repeat (files not yet in the page cache), which is "
                "reported as first_repeat_ms; stages run one after another in one process",
        "stages": {k: {**summarize([r[k] for r in steady]), "first_repeat_ms": runs[0][k]} for k in stages},
        "stage_groups": {"load (scan+read+decode+hu+stack+qc)": ["scan", "read", "decode", "hu", "stack", "qc"],
                         "preprocess (plan+resample+normalize)": ["plan", "resample", "normalize"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return doc


if __name__ == "__main__":
    main()
