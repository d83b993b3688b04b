"""Whole-pelvis phantom speed on this CPU: drawing a study and writing it as a DICOM series, per study.

Stages, each timed per study (wall-clock ms; median and the rest from ``sranet.bench.stats.summarize``):

  generate   ``generate_pelvis_study`` in memory (the study mix of ``sranet synth --anatomy pelvis``: kinds,
             variants, stages, patient positions), at the 256 preset (256 x 256, 150-170 slices) by default.
  write      ``write_dicom_series`` of that study (one int16 file per slice) into a temporary folder.

Then the whole command as the demo runs it: ``write_pelvis_dataset`` of ``--dataset`` studies with ``--workers``
processes, timed end to end (manifest, truth, lesion masks included).

    .venv/bin/python benchmarks/synth_pelvis_speed.py                          # 12 studies, then 160 on 2 workers
    .venv/bin/python benchmarks/synth_pelvis_speed.py --studies 4 --dataset 0 --out /tmp/s.json

Results go to benchmarks/results/synth_pelvis_speed.json with the machine, versions, command, date and the load
average: on a shared machine other processes inflate every number.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=12)
    ap.add_argument("--preset", default="256")
    ap.add_argument("--dataset", type=int, default=160, help="studies in the end-to-end run (0: skip it)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synth_pelvis_speed.json")
    args = ap.parse_args()

    from sranet.bench.env import collect_environment, machine_label
    from sranet.bench.stats import summarize
    from sranet.data.dicom_write import write_dicom_series
    from sranet.data.synthetic_dataset import DEFAULT_SPLITS, DEFAULT_STAGE_MIX
    from sranet.data.synthetic_pelvis import generate_pelvis_study
    from sranet.data.synthetic_pelvis_dataset import DEFAULT_NEGATIVES, plan_studies, write_pelvis_dataset

    generate_pelvis_study(0, preset=args.preset)  # warm-up (imports, OpenCV kernels)
    jobs = plan_studies(args.studies, 777, DEFAULT_NEGATIVES, DEFAULT_STAGE_MIX, DEFAULT_SPLITS)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"generate": [], "write": []}
    slices, mib = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            t0 = time.perf_counter()
            study = generate_pelvis_study(job["seed"], kind=job["kind"], variant=job["variant"],
                                          stages=job["stages"] or None, preset=args.preset)
            t1 = time.perf_counter()
            folder = Path(tmp) / job["study_id"]
            write_dicom_series(study.hu, study.spacing_mm, folder, origin_mm=study.origin_mm,
                               direction=study.direction, patient_position=study.patient_position)
            t2 = time.perf_counter()
            times["generate"].append((t1 - t0) * 1e3)
            times["write"].append((t2 - t1) * 1e3)
            slices.append(study.hu.shape[0])
            mib.append(sum(p.stat().st_size for p in folder.iterdir()) / 2**20)
        end_to_end = None
        if args.dataset:
            t0 = time.perf_counter()
            write_pelvis_dataset(Path(tmp) / "dataset", args.dataset, seed=1, preset=args.preset,
                                 workers=args.workers)
            seconds = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in (Path(tmp) / "dataset").rglob("*") if p.is_file()) / 2**30
            end_to_end = {"studies": args.dataset, "workers": args.workers, "seconds": round(seconds, 2),
                          "disk_gib": round(size, 3)}
    env = collect_environment()
    result = {
        "benchmark": "synth_pelvis_speed",
        "machine": machine_label(env),
        "environment": env,
        "load_average_1_5_15": {"before": list(load_before), "after": list(os.getloadavg())},
        "settings": {"studies": args.studies, "preset": args.preset, "median_slices": sorted(slices)[len(slices) // 2],
                     "median_series_mib": round(sorted(mib)[len(mib) // 2], 1)},
        "per_study_ms": {k: summarize(v) for k, v in times.items()},
        "write_pelvis_dataset": end_to_end,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for k, s in result["per_study_ms"].items():
        print(f"{k:9s} median {s['p50_ms']:7.1f} ms  p90 {s['p90_ms']:7.1f} ms  (n={s['n']})")
    if end_to_end:
        print(f"write_pelvis_dataset: {end_to_end['studies']} studies on {end_to_end['workers']} workers in "
              f"{end_to_end['seconds']:.1f} s, {end_to_end['disk_gib']:.2f} GiB")
    print(f"wrote {args.out} ({result['machine']}, load {load_before[0]:.1f})")


if __name__ == "__main__":
    main()
