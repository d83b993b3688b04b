"""Write a synthetic dataset to disk in the layout a user's real dataset uses (``sranet synth``).

```
OUT/manifest.csv                  case_id,path,stage,label,split,roi,side,lesion_mask
OUT/cases/SYNTH_0001/slice_*.dcm  one CT DICOM series per case (fake patient "SYNTH^0001")
OUT/lesions/SYNTH_0001.npy        uint8 (D, H, W) 0/1 lesion mask on load_volume's grid (zeros for stage 0)
OUT/synth.json                    generator settings and per-case spacing/side/seed, for reproducibility
```
Stages are allotted in proportion to the stage mix (largest remainder, then shuffled), and splits are stratified by
label, so a small dataset still has both classes in every split where it can.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from sranet.data.manifest import write_manifest
from sranet.data.synthetic import DEFAULT_SHAPE, generate_case
from sranet.errors import InputError

# Stage I is invisible on CT (label noise); kept a minority so a good model can still reach AUC >= 0.9.
DEFAULT_STAGE_MIX: dict[int, float] = {0: 0.5, 1: 0.05, 2: 0.15, 3: 0.15, 4: 0.15}
DEFAULT_SPLITS: dict[str, float] = {"train": 0.7, "val": 0.15, "test": 0.15}


def parse_stage_mix(text: str) -> dict[int, float]:
    """``"0:0.5,1:0.05,2:0.15,3:0.15,4:0.15"`` -> {stage: weight}, weights normalised to sum 1."""
    mix: dict[int, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        stage, sep, weight = item.partition(":")
        try:
            s, w = int(stage), float(weight)
        except ValueError:
            s, w = -1, -1.0
        if not sep or s not in range(5) or not w >= 0 or s in mix:
            raise InputError(
                f"--stage-mix item {item!r} is not 'stage:weight' with a new stage 0-4 and a weight >= 0. "
                "Example: --stage-mix 0:0.5,1:0.05,2:0.15,3:0.15,4:0.15"
            )
        mix[s] = w
    total = sum(mix.values())
    if not mix or total <= 0:
        raise InputError(f"--stage-mix {text!r} gives no stage a positive weight. Example: 0:0.5,2:0.5")
    return {s: w / total for s, w in sorted(mix.items())}


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"96x128x128"`` or ``"96,128,128"`` -> (D, H, W); ``"64"`` -> (64, 64, 64)."""
    parts = [p for p in text.replace("x", ",").replace("X", ",").split(",") if p.strip()]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) == 1:
        sizes = sizes * 3
    if len(sizes) != 3 or min(sizes) < 16 or max(sizes) > 1024:
        raise InputError(f"--size {text!r} must be D x H x W (e.g. 96x128x128) or one edge, each 16-1024 voxels.")
    return sizes  # type: ignore[return-value]


def allot_stages(n: int, mix: dict[int, float], rng: np.random.Generator) -> list[int]:
    """``n`` stages in proportion to ``mix`` (largest-remainder rounding), shuffled."""
    raw = {s: w * n for s, w in mix.items()}
    counts = {s: int(np.floor(v)) for s, v in raw.items()}
    for s in sorted(raw, key=lambda s: raw[s] - counts[s], reverse=True)[: n - sum(counts.values())]:
        counts[s] += 1
    stages = [s for s, c in counts.items() for _ in range(c)]
    rng.shuffle(stages)
    return stages


def allot_splits(labels: list[int], fractions: dict[str, float], rng: np.random.Generator) -> list[str]:
    """A split per case, stratified by label: each label's cases are divided by ``fractions`` (rounded)."""
    splits = [""] * len(labels)
    for label in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == label]
        rng.shuffle(idx)
        n = len(idx)
        n_test = int(round(n * fractions.get("test", 0.0)))
        n_val = int(round(n * fractions.get("val", 0.0)))
        if n_test + n_val >= n:  # keep at least one training case per label
            n_test, n_val = max(0, min(n_test, n - 1)), max(0, min(n_val, n - 1 - min(n_test, n - 1)))
        for k, i in enumerate(idx):
            splits[i] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    return splits


def _write_one(job: dict) -> dict:
    from sranet.data.dicom_write import write_dicom_series

    case = generate_case(job["seed"], job["stage"], shape=job["shape"])
    out = Path(job["out"])
    number = job["number"]
    write_dicom_series(
        case.hu,
        case.spacing_mm,
        out / "cases" / job["case_id"],
        origin_mm=case.origin_mm,
        direction=case.direction,
        patient_name=f"SYNTH^{number:04d}",
        patient_id=f"SYNTH{number:04d}",
    )
    lesion = out / "lesions" / f"{job['case_id']}.npy"
    tmp = lesion.with_name(f".{lesion.stem}.tmp.npy")
    np.save(tmp, case.lesion_mask)
    os.replace(tmp, lesion)
    return {
        "case_id": job["case_id"],
        "path": f"cases/{job['case_id']}",
        "stage": case.stage,
        "label": case.label,
        "split": job["split"],
        "roi": case.roi,
        "side": case.side,
        "lesion_mask": f"lesions/{job['case_id']}.npy",
        "_info": {"seed": job["seed"], "spacing_mm": list(case.spacing_mm), "shape": list(case.hu.shape),
                  "head_radius_mm": case.head_radius_mm, "lesion_voxels": int(case.lesion_mask.sum())},
    }


def write_dataset(
    out_dir: str | os.PathLike,
    n_cases: int,
    *,
    seed: int = 0,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    stage_mix: dict[int, float] | None = None,
    split_fractions: dict[str, float] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Generate ``n_cases`` phantoms as DICOM series + lesion masks + manifest under ``out_dir``; return the manifest."""
    if n_cases < 1:
        raise InputError(f"--cases {n_cases} must be at least 1.")
    if workers < 1:
        raise InputError(f"--workers {workers} must be at least 1.")
    out = Path(out_dir)
    manifest = out / "manifest.csv"
    if manifest.exists() and not overwrite:
        raise InputError(
            f"{manifest} already exists; refusing to overwrite a dataset. Choose a new --out or pass --overwrite."
        )
    (out / "lesions").mkdir(parents=True, exist_ok=True)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    mix = stage_mix or DEFAULT_STAGE_MIX
    fractions = split_fractions or DEFAULT_SPLITS
    rng = np.random.default_rng(seed)
    stages = allot_stages(n_cases, mix, rng)
    splits = allot_splits([int(s > 0) for s in stages], fractions, rng)
    seeds = rng.integers(0, 2**31 - 1, size=n_cases)
    jobs = [
        {"seed": int(seeds[i]), "stage": stages[i], "shape": tuple(shape), "out": str(out), "number": i + 1,
         "case_id": f"SYNTH_{i + 1:04d}", "split": splits[i]}
        for i in range(n_cases)
    ]
    from tqdm import tqdm

    bar = dict(total=n_cases, desc="synth", unit="case", disable=not progress)
    if workers == 1:
        rows = [_write_one(j) for j in tqdm(jobs, **bar)]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(tqdm(pool.map(_write_one, jobs), **bar))
    info = {"seed": seed, "shape": list(shape), "stage_mix": {str(k): v for k, v in mix.items()},
            "split_fractions": fractions, "cases": {r["case_id"]: r.pop("_info") for r in rows}}
    (out / "synth.json").write_text(json.dumps(info, indent=1))
    return write_manifest(manifest, rows)
