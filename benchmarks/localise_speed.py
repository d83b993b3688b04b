"""Femoral-head localisation speed on this CPU, for a 512 x 512 x 300 series already in memory.

The series is a whole-pelvis phantom (``generate_pelvis_study``: 0.8 mm pixels, 1 mm slices, both hips), held as
float32 HU like ``load_volume`` returns it. ``locate_femoral_heads`` runs ``--repeats`` times after one warm-up
call; every call is timed (wall-clock and this process's CPU time, ms) and split into its stages (downsample,
vote, analyse). The centre error
of each head against the phantom's truth is recorded too, so a fast wrong answer cannot pass for a result.

    .venv/bin/python benchmarks/localise_speed.py                      # 30 calls, about a minute with generation
    .venv/bin/python benchmarks/localise_speed.py --repeats 5 --out /tmp/loc.json

Results go to benchmarks/results/localise_speed.json with the machine, library versions, command, date and the
load average while it ran: on a shared machine other processes inflate every number.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "localise_speed.json")
    args = ap.parse_args()

    import numpy as np

    from sranet.bench.env import collect_environment, machine_label
    from sranet.bench.stats import summarize
    from sranet.data.synthetic_pelvis import generate_pelvis_study
    from sranet.runtime.localise import locate_femoral_heads

    study = generate_pelvis_study(args.seed, preset="512", slices=args.slices, slice_mm=1.0, pixel_mm=0.8,
                                  stages={"L": 2, "R": 0}, patient_position="HFS")
    volume = study.to_volume()
    locate_femoral_heads(volume)  # warm-up: imports, OpenCV and numpy first-call costs
    load_before = os.getloadavg()
    totals, cpu, stages, errors = [], [], {"downsample": [], "vote": [], "analyse": []}, []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        loc = locate_femoral_heads(volume)
        totals.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        for k in stages:
            stages[k].append(loc.timings_ms[k])
        errors.append({side: round(float(np.linalg.norm(np.subtract(h.centre_mm, study.hips[side].centre_mm))), 3)
                       for side, h in loc.heads.items()})
    env = collect_environment()
    result = {
        "benchmark": "localise_speed",
        "machine": machine_label(env),
        "environment": env,
        "load_average_1_5_15": {"before": list(load_before), "after": list(os.getloadavg())},
        "settings": {"shape": list(volume.shape), "spacing_mm": list(volume.spacing_mm), "dtype": str(volume.hu.dtype),
                     "repeats": args.repeats, "seed": args.seed, "grid_mm": 4.0},
        "latency_ms": summarize(totals),
        "cpu_time_ms": summarize(cpu),  # this process's CPU time (all its threads): less sensitive to other load
        "stage_p50_ms": {k: float(np.median(v)) for k, v in stages.items()},
        "centre_error_mm": errors[0],
        "same_answer_every_call": all(e == errors[0] for e in errors),
        "target_ms": 150.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lat = result["latency_ms"]
    print(f"locate 512x512x{args.slices}: p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms (n={lat['n']}), "
          f"CPU time p50 {result['cpu_time_ms']['p50_ms']:.1f} ms; "
          f"stages p50 {', '.join(f'{k} {v:.1f}' for k, v in result['stage_p50_ms'].items())} ms; "
          f"errors {errors[0]} mm; load {load_before[0]:.1f}")
    print(f"wrote {args.out} ({result['machine']})")


if __name__ == "__main__":
    main()
