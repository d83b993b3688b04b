"""Loading a 512 x 512 x 300 DICOM series with and without a ROI: seconds, decoded slices and peak memory.

The series is synthesised in a temporary folder from one real CT slice (tests/data/realct/pydicom/CT_small.dcm,
resized to 512 x 512 with OpenCV; 0.7 mm pixels, 1 mm slices; fresh UIDs, patient fields blanked). Each mode runs
in its own Python process so that peak RSS (``ru_maxrss``) belongs to that mode alone:

  full   ``load_volume(folder)``: every slice decoded, (300, 512, 512) float32 HU.
  roi    ``load_volume(folder, roi=...)``: a 96 x 96 x 96 mm femoral-head-sized box; only the slices it needs are
         decoded (``meta["decoded_slices"]``) and only the box is kept.
  roi+prep  the roi load followed by ``preprocess`` to the 128^3 network input.

Memory: ``tracemalloc`` peak (Python and numpy allocations) of one extra, untimed call, and the process's peak RSS.
Times are wall-clock seconds, median and 90th percentile over ``--repeats`` (the OS page cache is warm after the
first repeat, so this is decode + assembly cost, not disk speed).

    .venv/bin/python benchmarks/load_series.py                    # 300 slices, 5 repeats (a few minutes)
    .venv/bin/python benchmarks/load_series.py --slices 24 --repeats 2 --out /tmp/x.json   # quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # sibling scripts
PIXEL_MM, SLICE_MM, SIZE = 0.7, 1.0, 512


def synthesise(folder: Path, n_slices: int) -> None:
    """Write ``n_slices`` uncompressed 512 x 512 CT slices built from a real slice (no patient data) into ``folder``."""
    from preprocess_stages import synthesise_series  # sibling script; one synthesiser for every benchmark

    synthesise_series(folder, n_slices, size=SIZE, pixel_mm=PIXEL_MM, slice_mm=SLICE_MM)


def roi_text(n_slices: int) -> str:
    """A 96 mm cube at a hip-like position: right of centre, mid-depth along z (LPS mm)."""
    z_mid = -(n_slices - 1) * SLICE_MM / 2
    half = min(48.0, n_slices * SLICE_MM / 4)
    return f"mm:-110:-14,-40:56,{z_mid - half}:{z_mid + half}"


def child(mode: str, folder: Path, repeats: int, n_slices: int) -> dict:
    """Run one mode ``repeats`` times in this process; return times, decode counts and memory peaks."""
    import resource
    import tracemalloc

    from sranet.config import PreprocessConfig
    from sranet.runtime.io import load_volume
    from sranet.runtime.preprocess import preprocess
    from sranet.runtime.roi import parse_roi

    roi = None if mode == "full" else parse_roi(roi_text(n_slices))
    cfg = PreprocessConfig()

    def run():
        volume = load_volume(folder, roi=roi)
        if mode == "roi+prep":
            preprocess(volume, cfg, roi)
        return volume

    times = []
    for _ in range(repeats):  # timed without tracemalloc, which slows Python-level parsing several-fold
        t = time.perf_counter()
        volume = run()
        times.append(time.perf_counter() - t)
        shape, decoded = volume.shape, volume.meta["decoded_slices"]
        del volume
    tracemalloc.start()
    run()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"mode": mode, "roi": None if roi is None else roi.text(), "seconds": times,
            "median_s": float(np.median(times)), "p90_s": float(np.percentile(times, 90)), "min_s": float(min(times)),
            "decoded_slices": decoded, "volume_shape": list(shape), "tracemalloc_peak_mib": traced_peak / 2**20,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("sranet", "numpy", "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg",
                 "opencv-python-headless"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "load_series.json")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.repeats, args.slices)))
        return
    import psutil

    with tempfile.TemporaryDirectory(prefix="sranet-load-series-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        synthesise(folder, args.slices)
        synth_s = time.perf_counter() - t
        runs = []
        for mode in ("full", "roi", "roi+prep"):
            cmd = [sys.executable, __file__, "--slices", str(args.slices), "--repeats", str(args.repeats),
                   "--child", mode, str(folder)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            r = runs[-1]
            print(f"{mode:9s} median {r['median_s']:.3f} s  p90 {r['p90_s']:.3f} s  decoded {r['decoded_slices']:4d}"
                  f"  shape {r['volume_shape']}  tracemalloc {r['tracemalloc_peak_mib']:.0f} MiB"
                  f"  peak RSS {r['peak_rss_mib']:.0f} MiB")
    result = {
        "benchmark": "load_series",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus_logical": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "versions": versions(),
        "series": {"slices": args.slices, "size": [SIZE, SIZE], "pixel_mm": PIXEL_MM, "slice_mm": SLICE_MM,
                   "transfer_syntax": "explicit VR little endian (uncompressed)", "synthesis_s": round(synth_s, 2)},
        "repeats": args.repeats,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
