"""Femoral-head localisation accuracy: held-out pelvis phantoms, phantoms without hips, and real CT without hips.

Phantoms: ``--studies`` whole studies from seeds the tests and the demo do not use (10000 + i), in the mix
``sranet synth --anatomy pelvis`` writes (kinds, variants, stages, patient positions), at the 256 preset. For each
hip the localiser's centre is compared with the phantom's truth (Euclidean error in mm), its side with the truth's
side (a head reported on the wrong side counts as swapped), and each study without hips counts the heads reported
on it. Real CT without femoral heads (tests/data/realct): the TotalSegmentator abdominal volume, the GE head series
and single slices; a head reported on any of them is a false head.

    .venv/bin/python benchmarks/localise_accuracy.py                 # 160 studies, a few minutes on 2 cores
    .venv/bin/python benchmarks/localise_accuracy.py --studies 20 --out /tmp/acc.json

Writes benchmarks/results/localise_accuracy.json: the error table per visibility and variant, misses and false
heads with their reasons, the real-data checks, machine, versions and command.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _one(job: dict) -> dict:
    import numpy as np

    from sranet.data.synthetic_pelvis import generate_pelvis_study
    from sranet.runtime.localise import locate_femoral_heads

    study = generate_pelvis_study(job["seed"], kind=job["kind"], variant=job["variant"],
                                  stages=job["stages"] or None, preset=job["preset"])
    loc = locate_femoral_heads(study.to_volume())
    out = {"study": job["study_id"], "kind": study.kind, "variant": study.variant,
           "position": study.patient_position, "ms": round(loc.timings_ms.get("total", 0.0), 1), "hips": [],
           "reported": {s: h.to_dict() for s, h in loc.heads.items()}, "reasons": loc.reasons}
    for side, hip in study.hips.items():
        row = {"side": side, "visibility": hip.visibility, "visible_fraction": hip.visible_fraction,
               "metal": hip.metal, "stage": hip.stage, "found": side in loc.heads}
        if side in loc.heads:
            head = loc.heads[side]
            row.update(error_mm=round(float(np.linalg.norm(np.subtract(head.centre_mm, hip.centre_mm))), 3),
                       radius_error_mm=round(head.radius_mm - hip.radius_mm, 3), qc=list(head.qc),
                       confidence=head.confidence)
            other = study.hips["R" if side == "L" else "L"]
            row["swapped"] = bool(np.linalg.norm(np.subtract(head.centre_mm, other.centre_mm))
                                  < np.linalg.norm(np.subtract(head.centre_mm, hip.centre_mm)))
        else:
            row["reason"] = loc.reasons.get(side, "")
        out["hips"].append(row)
    return out


def _summary(errors: list[float]) -> dict:
    import numpy as np

    if not errors:
        return {"n": 0}
    e = np.asarray(errors)
    return {"n": int(e.size), "median_mm": float(np.median(e)), "p95_mm": float(np.percentile(e, 95)),
            "max_mm": float(e.max()), "share_within_5_mm": float(np.mean(e <= 5.0))}


def _real_negatives() -> list[dict]:
    import tarfile

    from sranet.runtime.io import load_volume
    from sranet.runtime.localise import locate_femoral_heads

    data = ROOT / "tests" / "data" / "realct"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(data / "dcm_qa_ct" / "GE.tar.xz") as tar:
            tar.extractall(tmp, filter="data")
        ge = next(Path(tmp).rglob("*.dcm")).parent
        cases = [("TotalSegmentator abdomen (NIfTI, 3 mm)", data / "totalsegmentator" / "example_ct_sm.nii.gz"),
                 ("GE head series (tilted)", ge)]
        cases += [(f"single slice {p.name}", p) for p in sorted(data.rglob("*.dcm"))]
        for name, path in cases:
            try:
                volume = load_volume(path)
            except Exception as exc:  # not loadable as CT: refused before localisation, no head either
                rows.append({"case": name, "heads": 0, "refused_at_load": type(exc).__name__})
                continue
            loc = locate_femoral_heads(volume)
            rows.append({"case": name, "shape": list(volume.shape), "heads": len(loc.heads),
                         "reason": loc.reasons.get("L", "")[:160]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=160)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--preset", default="256")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "localise_accuracy.json")
    args = ap.parse_args()

    from sranet.bench.env import collect_environment, machine_label
    from sranet.data.synthetic_dataset import DEFAULT_SPLITS, DEFAULT_STAGE_MIX
    from sranet.data.synthetic_pelvis_dataset import DEFAULT_NEGATIVES, plan_studies

    jobs = plan_studies(args.studies, 10000, DEFAULT_NEGATIVES, DEFAULT_STAGE_MIX, DEFAULT_SPLITS)
    for job in jobs:
        job["preset"] = args.preset
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(_one, jobs))
    hips = [h | {"variant": r["variant"], "study": r["study"], "position": r["position"]}
            for r in results for h in r["hips"]]
    full = [h for h in hips if h["visibility"] == "full" and h["metal"] != "prosthesis"]
    table = {
        "visible heads (full view, native)": _summary([h["error_mm"] for h in full if h["found"]]),
        "partially visible heads (cut by the scan's edge)": _summary(
            [h["error_mm"] for h in hips if h["visibility"] == "partial" and h["found"]]),
        "prosthesis (metal ball, reported for QC)": _summary(
            [h["error_mm"] for h in hips if h["metal"] == "prosthesis" and h["found"]]),
    }
    for variant in ("normal", "screws", "hip_out_of_fov", "head_cut"):
        table[f"visible heads, variant {variant}"] = _summary(
            [h["error_mm"] for h in full if h["found"] and h["variant"] == variant])
    negatives = [r for r in results if r["kind"] != "pelvis"]
    doc = {
        "benchmark": "localise_accuracy",
        "machine": machine_label(collect_environment()),
        "environment": collect_environment(),
        "settings": {"studies": args.studies, "seeds": "10000 + i (plan_studies)", "preset": args.preset,
                     "negatives_share": DEFAULT_NEGATIVES},
        "error_table": table,
        "visible_heads": len(full),
        "visible_heads_found": sum(h["found"] for h in full),
        "visible_heads_missed": [h for h in full if not h["found"]],
        "partial_heads": {"total": sum(h["visibility"] == "partial" for h in hips),
                          "found": sum(h["visibility"] == "partial" and h["found"] for h in hips)},
        "heads_out_of_view_reported": sum(h["visibility"] == "none" and h["found"] for h in hips),
        "sides_swapped": sum(bool(h.get("swapped")) for h in hips),
        "negative_studies": {"total": len(negatives), "heads_reported": sum(len(r["reported"]) for r in negatives),
                             "by_kind": {k: sum(r["kind"] == k for r in negatives) for k in ("abdomen", "chest", "knee")}},
        "real_ct_without_hips": _real_negatives(),
        "per_study_ms_p50": sorted(r["ms"] for r in results)[len(results) // 2],
        "studies": results,
    }
    metal = [h for h in hips if h["metal"] in ("screws", "prosthesis") and h["found"]]
    doc["metal_flagged"] = {"found": len(metal), "flagged": sum("metal_near_head" in h["qc"] for h in metal)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    vis = table["visible heads (full view, native)"]
    print(f"visible heads: {doc['visible_heads_found']}/{doc['visible_heads']} found; error median "
          f"{vis.get('median_mm', float('nan')):.2f} mm, p95 {vis.get('p95_mm', float('nan')):.2f}, max "
          f"{vis.get('max_mm', float('nan')):.2f}, within 5 mm {vis.get('share_within_5_mm', float('nan')):.4f}")
    print(f"sides swapped {doc['sides_swapped']}; heads on {len(negatives)} studies without hips: "
          f"{doc['negative_studies']['heads_reported']}; on real CT without hips: "
          f"{sum(r['heads'] for r in doc['real_ct_without_hips'])}; metal flagged {doc['metal_flagged']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
