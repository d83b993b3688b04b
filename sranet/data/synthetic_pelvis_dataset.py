"""Write whole-pelvis phantom studies to disk as a user's archive looks (``sranet synth --anatomy pelvis``).

```
OUT/cases/P0001/slice_*.dcm   one CT DICOM series per study (fake patient "SYNTH^P0001"), in the slice order
                              and orientation of its patient position (HFS, FFS, HFP, FFP)
OUT/lesions/P0001_L.npy       uint8 0/1 lesion mask around that femoral head (zeros for stage 0); its voxel box
                              in the series (as ``load_volume`` returns it) is truth.csv's ``lesion_box``
OUT/manifest.csv              case_id,path,stage,label,split,side,lesion_mask,lesion_box: one row per hip a model
                              can be asked about (in the field of view, not replaced by a prosthesis); no ROI: the
                              localiser finds it
OUT/truth.csv                 the truth per hip (and one row per study without hips), see TRUTH_COLUMNS
OUT/synth.json                settings and per-study facts (grid, pose, variant), for reproducibility
```
Studies are allotted to kinds and variants in proportion to the mixes (largest remainder, shuffled); hips to ARCO
stages likewise; splits are per study, stratified by whether it holds a diseased hip, so both hips of a patient stay
in one split.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from sranet.data.manifest import write_manifest
from sranet.data.synthetic_dataset import DEFAULT_SPLITS, DEFAULT_STAGE_MIX, allot_splits, allot_stages
from sranet.data.synthetic_pelvis import KINDS, VARIANTS, generate_pelvis_study
from sranet.errors import InputError

TRUTH_COLUMNS = ("study_id", "case_id", "path", "kind", "variant", "patient_position", "split", "side", "visibility",
                 "visible_fraction", "centre_x_mm", "centre_y_mm", "centre_z_mm", "radius_mm", "stage", "metal",
                 "lesion_mask", "lesion_box")
# share of studies without hips, split evenly between the three kinds
DEFAULT_NEGATIVES = 0.15
DEFAULT_VARIANT_MIX: dict[str, float] = {"normal": 0.78, "prosthesis": 0.05, "screws": 0.05, "hip_out_of_fov": 0.06,
                                         "head_cut": 0.06}
BODY_PART = {"pelvis": "PELVIS", "abdomen": "ABDOMEN", "chest": "CHEST", "knee": "KNEE"}


def _allot(n: int, mix: dict[str, float], rng: np.random.Generator) -> list[str]:
    """``n`` labels in proportion to ``mix`` (weights, any total), largest-remainder rounding, shuffled."""
    total = sum(mix.values())
    raw = {k: w / total * n for k, w in mix.items()}
    counts = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    out = [k for k, c in counts.items() for _ in range(c)]
    rng.shuffle(out)
    return out


def plan_studies(n_studies: int, seed: int, negatives: float, stage_mix: dict[int, float],
                 split_fractions: dict[str, float]) -> list[dict]:
    """One job per study: id, seed, kind, variant, stages per side, split. Deterministic for ``seed``."""
    if n_studies < 1:
        raise InputError(f"--cases {n_studies} must be at least 1.")
    if not 0.0 <= negatives <= 1.0:
        raise InputError(f"--negatives {negatives} must be a share between 0 and 1.")
    rng = np.random.default_rng([int(seed), 23])
    n_neg = int(round(negatives * n_studies))
    kinds = ["pelvis"] * (n_studies - n_neg) + _allot(n_neg, {"abdomen": 1.0, "chest": 1.0, "knee": 1.0}, rng)
    rng.shuffle(kinds)
    n_pelvis = kinds.count("pelvis")
    variants = iter(_allot(n_pelvis, DEFAULT_VARIANT_MIX, rng))
    hip_stages = iter(allot_stages(2 * n_pelvis, stage_mix, rng))
    seeds = rng.integers(0, 2**31 - 1, size=n_studies)
    jobs = []
    for i, kind in enumerate(kinds):
        job = {"study_id": f"P{i + 1:04d}", "number": i + 1, "seed": int(seeds[i]), "kind": kind, "variant": "normal",
               "stages": {}}
        if kind == "pelvis":
            job["variant"] = next(variants)
            job["stages"] = {"L": int(next(hip_stages)), "R": int(next(hip_stages))}
        jobs.append(job)
    labels = [int(any(s > 0 for s in j["stages"].values())) for j in jobs]
    for job, split in zip(jobs, allot_splits(labels, split_fractions, rng), strict=True):
        job["split"] = split
    return jobs


def _write_study(job: dict) -> tuple[list[dict], list[dict], dict]:
    from sranet.data.dicom_write import write_dicom_series

    study = generate_pelvis_study(job["seed"], kind=job["kind"], variant=job["variant"],
                                  stages=job["stages"] or None, preset=job["preset"], **job["grid"])
    out, sid = Path(job["out"]), job["study_id"]
    write_dicom_series(study.hu, study.spacing_mm, out / "cases" / sid, origin_mm=study.origin_mm,
                       direction=study.direction, patient_name=f"SYNTH^{sid}", patient_id=f"SYNTH{sid}",
                       patient_position=study.patient_position, body_part=BODY_PART[study.kind])
    base = {"study_id": sid, "path": f"cases/{sid}", "kind": study.kind, "variant": study.variant,
            "patient_position": study.patient_position, "split": job["split"]}
    truth, manifest = [], []
    if not study.hips:
        truth.append({**base, "visibility": "none"})
    for side, hip in study.hips.items():
        case_id = f"{sid}_{side}"
        mask_path = ""
        if hip.lesion_mask is not None:
            mask_path = f"lesions/{case_id}.npy"
            tmp = out / "lesions" / f".{case_id}.tmp.npy"
            np.save(tmp, hip.lesion_mask)
            os.replace(tmp, out / mask_path)
        truth.append({**base, "case_id": case_id, "side": side, "visibility": hip.visibility,
                      "visible_fraction": hip.visible_fraction, "centre_x_mm": hip.centre_mm[0],
                      "centre_y_mm": hip.centre_mm[1], "centre_z_mm": hip.centre_mm[2], "radius_mm": hip.radius_mm,
                      "stage": "" if hip.stage is None else hip.stage, "metal": hip.metal, "lesion_mask": mask_path,
                      "lesion_box": "" if hip.lesion_box is None else ",".join(f"{a}:{b}" for a, b in hip.lesion_box)})
        if hip.visibility != "none" and hip.stage is not None:
            manifest.append({"case_id": case_id, "path": base["path"], "stage": hip.stage, "label": int(hip.stage > 0),
                             "split": job["split"], "side": side, "lesion_mask": mask_path,
                             "lesion_box": truth[-1]["lesion_box"] if mask_path else ""})
    info = {"seed": job["seed"], "kind": study.kind, "variant": study.variant, "shape": list(study.hu.shape),
            "spacing_mm": list(study.spacing_mm), "patient_position": study.patient_position, **study.info}
    return manifest, truth, info


def write_pelvis_dataset(out_dir: str | os.PathLike, n_studies: int, *, seed: int = 0, preset: str = "256",
                         negatives: float = DEFAULT_NEGATIVES, stage_mix: dict[int, float] | None = None,
                         split_fractions: dict[str, float] | None = None, workers: int = 1,
                         overwrite: bool = False, progress: bool = False, grid: dict | None = None) -> Path:
    """Generate ``n_studies`` whole studies under ``out_dir`` (layout in the module docstring); return the manifest.

    preset     "256" (256 x 256, 150-170 slices) or "512" (512 x 512, 0.6-1.0 mm pixels, 150-400 slices).
    negatives  share of studies without hips (abdomen, chest, knees).
    grid       fixes "slices", "slice_mm" and/or "pixel_mm" of every study (small datasets for tests).
    """
    if workers < 1:
        raise InputError(f"--workers {workers} must be at least 1.")
    out = Path(out_dir)
    manifest = out / "manifest.csv"
    if manifest.exists() and not overwrite:
        raise InputError(f"{manifest} already exists; refusing to overwrite a dataset. Choose a new --out or pass "
                         "--overwrite.")
    mix = stage_mix or DEFAULT_STAGE_MIX
    fractions = split_fractions or DEFAULT_SPLITS
    jobs = plan_studies(n_studies, seed, negatives, mix, fractions)
    (out / "lesions").mkdir(parents=True, exist_ok=True)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    for job in jobs:
        job.update(out=str(out), preset=preset, grid=dict(grid or {}))
    from tqdm import tqdm

    bar = dict(total=len(jobs), desc="synth pelvis", unit="study", disable=not progress)
    if workers == 1:
        results = [_write_study(j) for j in tqdm(jobs, **bar)]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(_write_study, jobs), **bar))
    rows = [r for m, _, _ in results for r in m]
    truth = [t for _, ts, _ in results for t in ts]
    _write_csv(out / "truth.csv", TRUTH_COLUMNS, truth)
    settings = {"anatomy": "pelvis", "seed": seed, "preset": preset, "negatives": negatives,
                "stage_mix": {str(k): v for k, v in mix.items()}, "split_fractions": fractions,
                "kinds": list(KINDS), "variants": list(VARIANTS),
                "studies": {j["study_id"]: info for j, (_, _, info) in zip(jobs, results, strict=True)}}
    (out / "synth.json").write_text(json.dumps(settings, indent=1))
    if not rows:
        raise InputError(f"none of the {n_studies} studies holds a hip a model can be asked about (all negatives "
                         "or hips out of view); lower --negatives or raise --cases.", path=out)
    return write_manifest(manifest, rows)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="raise", restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)


def read_truth(path: str | os.PathLike) -> list[dict]:
    """truth.csv as dicts, numbers parsed (centres, radius, visible fraction as floats; stage as int or None;
    lesion_box as ((d0, d1), (h0, h1), (w0, w1)) or None)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in ("visible_fraction", "centre_x_mm", "centre_y_mm", "centre_z_mm", "radius_mm"):
            r[k] = float(r[k]) if r[k] else None
        r["stage"] = int(r["stage"]) if r["stage"] else None
        r["lesion_box"] = tuple(tuple(int(v) for v in part.split(":")) for part in r["lesion_box"].split(",")) \
            if r["lesion_box"] else None
    return rows
