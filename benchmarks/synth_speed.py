"""Synthetic data speed on this CPU: phantom generation, DICOM writing and `prepare`, per case, one process.

Stages, each timed per case (wall-clock ms; median, p90 and the rest from ``sranet.bench.stats.summarize``):

  generate   ``generate_case(seed, stage)`` in memory, 96 x 128 x 128 by default (stages cycled 0-4).
  write      ``write_dicom_series`` of that case (one int16 file per slice) into a temporary folder.
  prepare    ``prepare_case``: load_volume of the written series + preprocess to S^3 + bone mask + lesion resample.

    .venv/bin/python benchmarks/synth_speed.py                       # 20 cases, 96x128x128, S=128 (about a minute)
    .venv/bin/python benchmarks/synth_speed.py --cases 3 --out /tmp/synth.json   # quick check

Results go to benchmarks/results/synth_speed.json with the machine, library versions, command and date. Run it on
a quiet machine: other processes on the same cores inflate every number.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--shape", default="96x128x128", help="phantom D x H x W")
    ap.add_argument("--size", type=int, default=128, help="prepared cube edge S")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synth_speed.json")
    args = ap.parse_args()

    import numpy as np

    from sranet.bench.env import collect_environment, machine_label
    from sranet.bench.stats import summarize
    from sranet.config import PreprocessConfig
    from sranet.data.dicom_write import write_dicom_series
    from sranet.data.masks import BoneMaskParams
    from sranet.data.prepare import prepare_case
    from sranet.data.synthetic import generate_case
    from sranet.data.synthetic_dataset import parse_shape
    from sranet.runtime.manifest import Case

    shape = parse_shape(args.shape)
    cfg = PreprocessConfig(output_size=args.size)
    generate_case(999, 4, shape=shape)  # warm-up (imports, OpenCV kernels)
    times: dict[str, list[float]] = {"generate": [], "write": [], "prepare": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "cache"
        for sub in ("volumes", "masks", "lesions", "meta"):
            (out / sub).mkdir(parents=True)
        for i in range(args.cases):
            t0 = time.perf_counter()
            case = generate_case(i, i % 5, shape=shape)
            t1 = time.perf_counter()
            folder = root / f"case{i}"
            write_dicom_series(case.hu, case.spacing_mm, folder, origin_mm=case.origin_mm, direction=case.direction)
            t2 = time.perf_counter()
            lesion = root / f"lesion{i}.npy"
            np.save(lesion, case.lesion_mask)
            entry = Case(f"c{i}", folder, label=case.label, stage=case.stage, roi=case.roi, side=case.side,
                         lesion_mask=lesion)
            t3 = time.perf_counter()
            prepare_case(entry, out, cfg, BoneMaskParams())
            t4 = time.perf_counter()
            times["generate"].append((t1 - t0) * 1e3)
            times["write"].append((t2 - t1) * 1e3)
            times["prepare"].append((t4 - t3) * 1e3)
    env = collect_environment()
    result = {
        "benchmark": "synth_speed",
        "machine": machine_label(env),
        "environment": env,
        "settings": {"cases": args.cases, "shape": list(shape), "prepared_size": args.size},
        "per_case_ms": {k: summarize(v) for k, v in times.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for k, s in result["per_case_ms"].items():
        print(f"{k:9s} median {s['p50_ms']:7.1f} ms  p90 {s['p90_ms']:7.1f} ms  (n={s['n']})")
    print(f"wrote {args.out} ({result['machine']})")


if __name__ == "__main__":
    main()
