"""Batch throughput of ``sranet predict`` over whole studies: reading ahead (``--prefetch``) against one after the other.

Writes ``--studies`` whole-pelvis phantom studies as DICOM series (``generate_pelvis_study``, 512 x 512 pixels of
0.8 mm, ``--slices`` slices of ``--slice-mm``: 300 of 1 mm by default), exports the paper configuration with seeded random weights
(throughput does not depend on them) as the CPU graph ``sranet export --target onnxruntime-cpu`` picks, and runs
``predict_batch`` over all studies (each study read once, both hips located and inferred) for every ``--configs``
entry PREFETCH:THREADS (inputs read ahead on a background thread, backend threads), interleaved over ``--rounds``
rounds. The baseline is one after the other with every core for the backend (0:2 on two cores); reading ahead
while the backend runs on fewer threads leaves a core to the reader. Studies/s per run, their median per
configuration, and the ratio to the baseline within each round (the figure to quote: it cancels what other
processes do to both) go to
benchmarks/results/batch_throughput.json with the machine, versions, command and load average. The median stage
times of the records (read, locate, preprocess, infer) say where the time goes.

    .venv/bin/python benchmarks/batch_throughput.py                    # 20 studies, 4 configurations, 2 rounds
    .venv/bin/python benchmarks/batch_throughput.py --studies 4 --rounds 1 --out /tmp/bt.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def write_studies(root: Path, n: int, slices: int, slice_mm: float) -> list[Path]:
    from sranet.data.dicom_write import write_dicom_series
    from sranet.data.synthetic_pelvis import generate_pelvis_study

    folders = []
    for i in range(n):
        study = generate_pelvis_study(100 + i, preset="512", slices=slices, slice_mm=slice_mm, pixel_mm=0.8,
                                      stages={"L": i % 3, "R": 0}, patient_position="HFS" if i % 2 else "FFS")
        folder = root / f"study{i:02d}"
        write_dicom_series(study.hu, study.spacing_mm, folder, origin_mm=study.origin_mm, direction=study.direction,
                           patient_position=study.patient_position)
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--slice-mm", type=float, default=1.0)
    ap.add_argument("--configs", default="0:2,1:2,1:1,2:1",
                    help="comma-separated PREFETCH:THREADS (backend threads); the first is the baseline of every ratio")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "batch_throughput.json")
    args = ap.parse_args(argv)
    configs = [tuple(int(v) for v in c.split(":")) for c in args.configs.split(",")]

    from study_e2e import export_model

    from sranet.bench.env import collect_environment, machine_label
    from sranet.bench.throughput import compare_runs, time_batch
    from sranet.runtime.batch import cases_from
    from sranet.runtime.predictor import Predictor

    with tempfile.TemporaryDirectory(prefix="sranet-batch-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        folders = write_studies(tmp / "studies", args.studies, args.slices, args.slice_mm)
        artifact = export_model(tmp, "paper")
        print(f"{args.studies} studies and {artifact.name} ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        cases = cases_from(folders)
        load_before = os.getloadavg()
        runs = []
        predictors = {t: Predictor.from_artifact(artifact, threads=t) for t in sorted({t for _, t in configs})}
        try:
            for predictor in predictors.values():
                time_batch(predictor, cases[:2], tmp / "warmup.jsonl", 0)  # first-call costs
            for round_ in range(args.rounds):
                for prefetch, threads in configs:
                    run = {"round": round_, "config": f"{prefetch}:{threads}", "threads": threads,
                           **time_batch(predictors[threads], cases, tmp / "results.jsonl", prefetch)}
                    runs.append(run)
                    print(f"round {round_} prefetch {prefetch} threads {threads}: {run['studies_per_s']:.3f} "
                          f"studies/s ({run['wall_s']:.1f} s)", file=sys.stderr)
        finally:
            for predictor in predictors.values():
                predictor.close()
        load_after = os.getloadavg()
    if not all(r["predicted"] for r in runs):
        raise SystemExit("a run predicted no hip (every side refused or failed): the studies do not show the hips")

    names = [f"{prefetch}:{threads}" for prefetch, threads in configs]
    base = names[0]
    per_setting = {c["config"]: {"prefetch": p, "threads": t,
                                 "studies_per_s_median": round(c["studies_per_s_median"], 4),
                                 "ratio_to_baseline_by_round": [round(x, 3) for x in c["ratio_vs_first_by_round"]],
                                 "ratio_to_baseline_median": round(c["ratio_vs_first_median"], 3)}
                   for c, (p, t) in zip(compare_runs(runs, "config", names), configs, strict=True)}
    env = collect_environment()
    doc = {"benchmark": "batch_throughput", "machine": machine_label(env), "environment": env,
           "load_average_1_5_15": {"before": list(load_before), "after": list(load_after)},
           "settings": {"studies": args.studies, "slices": args.slices, "slice_mm": args.slice_mm, "pixels": 512,
                        "pixel_mm": 0.8, "model": "paper, seeded random weights, --target onnxruntime-cpu",
                        "batch": 1, "configs_prefetch_threads": [list(c) for c in configs], "baseline": base,
                        "rounds": args.rounds},
           "per_config": per_setting, "runs": runs, "target_ratio": 1.6}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for name, s in per_setting.items():
        print(f"prefetch:threads {name}: {s['studies_per_s_median']:.3f} studies/s median, "
              f"{s['ratio_to_baseline_median']:.2f}x {base}")
    print(f"wrote {args.out} ({doc['machine']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
