"""``sranet demo``: the README's main job as one command, on whole-pelvis phantom studies with no ROI given anywhere.

synthesise whole studies (``sranet synth --anatomy pelvis``, the 256 preset) -> prepare (each hip's ROI found by the
localiser) -> train (demo_train_config()) -> evaluate the test hips -> export ONNX (parity gated) -> predict the test
split's whole studies with the ONNX artifact (one record per hip, refusals for studies without hips) -> score those
predictions per hip against the phantoms' truth (AUC, attention on the lesion, localisation error) -> a short
latency benchmark of the whole-study path. Prints where each artefact went and the headline numbers. About five
minutes on a quiet 2-core CPU; ``--quick`` (tiny everything, for tests) well under one.

The demo defaults: 100 studies (15 % without hips: abdomen, chest, knees), split 60/20/20 by study, both hips of
each study used, and an explicit bone window for preprocessing (``DEMO_WINDOW_HU``, z-scored): air and fat are
clipped to -200 HU, so the normalisation does not depend on how much air a crop holds. The library's default window
is -1000..2000 HU; the window travels with the weights, so prediction uses the same one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import ThreadsOpt, cli_errors, progress_enabled

DEMO_STUDIES = 100
DEMO_SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}
DEMO_WINDOW_HU = (-200.0, 1300.0)  # bone window, z-scored per volume (see the module docstring)
QUICK_GRID = {"slices": 80, "slice_mm": 3.0}  # --quick: smaller studies (256 x 256 x 80)
HEATMAP_STUDIES = 3


@cli_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo writes (must be new or empty).")] = Path("runs/demo"),
    cases: Annotated[int | None, typer.Option("--cases", min=4, help="Whole-pelvis studies to generate (default 100; 8 with --quick).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny model, small studies, 2 epochs: checks the path, not the model.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for the phantoms and training.")] = 0,
    threads: ThreadsOpt = None,
) -> None:
    """Run the whole path on synthetic whole studies: synth, prepare, train, evaluate, export, predict, benchmark."""
    from sranet.errors import InputError

    n_studies = cases if cases is not None else (8 if quick else DEMO_STUDIES)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; the demo will not overwrite it.",
                         hint="Choose a new --out, or delete the folder.")
    out.mkdir(parents=True, exist_ok=True)
    steps = _Steps()
    manifest = steps.run("synthesise", _synthesise, out, n_studies, seed=seed, quick=quick)
    cache, train_cfg = steps.run("prepare", _prepare, out, manifest, quick=quick)
    best = steps.run("train", _train, out, cache, train_cfg)
    steps.run("evaluate", _evaluate, out, best, cache)
    model = steps.run("export", _export, out, best)
    summary = steps.run("predict", _predict_test_studies, model, out, cache, threads=threads)
    steps.run("benchmark", _benchmark, out, model, summary, threads=threads, quick=quick)
    steps.report(out)
    typer.echo(f"artefacts under {out}: data/, cache/, run/best.pt, eval/, model.onnx, predict/results.jsonl, "
               "predict/summary.json, benchmark.json")


class _Steps:
    """Runs the demo's steps in order, each under a ``== name`` heading, and reports their wall times."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def run(self, name: str, step, *args, **kwargs):
        typer.echo(f"\n== {name}")
        t0 = time.perf_counter()
        result = step(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - t0
        return result

    def report(self, out: Path) -> None:
        total = time.perf_counter() - self.start
        (out / "timings.json").write_text(json.dumps({"total_s": round(total, 1),
                                                      **{f"{k}_s": round(v, 1) for k, v in self.seconds.items()}}))
        typer.echo(f"\n== done in {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items()) + ")")


def _synthesise(out: Path, n_studies: int, *, seed: int, quick: bool) -> Path:
    """Whole-pelvis phantom studies (DICOM), their per-hip manifest (no ROI) and truth under out/data."""
    from sranet.data.synthetic_pelvis_dataset import DEFAULT_NEGATIVES, write_pelvis_dataset

    manifest = write_pelvis_dataset(out / "data", n_studies, seed=seed, preset="256",
                                    negatives=0.0 if quick else DEFAULT_NEGATIVES, split_fractions=DEMO_SPLITS,
                                    workers=1 if quick else 2, progress=progress_enabled(),
                                    grid=QUICK_GRID if quick else None)
    typer.echo(f"{n_studies} whole-pelvis studies (DICOM, no ROI anywhere) + per-hip manifest and truth -> "
               f"{manifest.parent}")
    return manifest


def _prepare(out: Path, manifest: Path, *, quick: bool):
    """The prepared cache under out/cache, each hip cropped around the head the localiser finds."""
    import dataclasses

    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.data.prepare import prepare_cache
    from sranet.train.loop import demo_train_config

    train_cfg = demo_train_config()
    if quick:
        train_cfg = dataclasses.replace(train_cfg, model="tiny", epochs=2, batch_size=4)
    model_cfg = ModelConfig.preset(train_cfg.model)
    cache = out / "cache"
    preprocess_cfg = PreprocessConfig.for_model(model_cfg, window_hu=DEMO_WINDOW_HU)
    prepared = prepare_cache(manifest, cache, preprocess_cfg, grid=model_cfg.grid, workers=1 if quick else 2,
                             progress=progress_enabled())
    failed = ""
    if prepared.failures:
        kinds: dict[str, int] = {}
        for f in prepared.failures:
            kinds[f["error"]] = kinds.get(f["error"], 0) + 1
        failed = f"; not prepared: {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))} (see {cache / 'failures.jsonl'})"
    typer.echo(f"{len(prepared.done)} hips located and cropped ({len(prepared.auto_roi)} automatic ROIs) -> "
               f"{model_cfg.input_size}^3 network inputs + bone masks{failed} -> {cache}")
    return cache, train_cfg


def _train(out: Path, cache: Path, train_cfg) -> Path:
    """Train on the cache into out/run; returns the best checkpoint."""
    from sranet.train.loop import train

    result = train(train_cfg, cache, out / "run", progress=progress_enabled(), log=typer.echo)
    typer.echo(f"best epoch {result.best_epoch} (val AUC {result.best_val_auc:.3f}, threshold {result.threshold:.3f}) "
               f"-> {result.best_path}")
    return result.best_path


def _evaluate(out: Path, best: Path, cache: Path) -> None:
    from sranet.train.evaluate import evaluate

    metrics = evaluate(best, cache, "test", out / "eval")
    typer.echo(f"test hips (prepared cache): {_metrics_line(metrics)} -> {out / 'eval'}")


def _export(out: Path, best: Path) -> Path:
    """The ONNX artifact (the exporter refuses to write a model that fails its parity gate)."""
    from sranet.export.onnx import export_onnx

    exported = export_onnx(best, out / "model.onnx", log=typer.echo)
    typer.echo(f"ONNX (opset {exported.opset}, parity gate passed) -> {exported.path}; report -> {exported.parity_path}")
    return exported.path


def _metrics_line(metrics: dict) -> str:
    keys = ("auc", "sensitivity", "specificity", "accuracy")
    flat = metrics.get("metrics", metrics)
    parts = [f"{k} {flat[k]:.3f}" for k in keys if isinstance(flat.get(k), (int, float))]
    return ", ".join(parts) or "see metrics.json"


def _predict_test_studies(artifact: Path, out: Path, cache: Path, *, threads: int | None) -> dict:
    """``sranet predict`` on the test split's whole studies (with those without hips) with ``artifact`` (ONNX
    Runtime on the CPU, no torch on this path): one record per hip, heatmaps for the first few studies; then the
    per-hip scores against the phantoms' truth (``_score``) in predict/summary.json."""
    from sranet.data.synthetic_pelvis_dataset import read_truth
    from sranet.runtime.batch import predict_batch
    from sranet.runtime.predictor import CaseInput, Predictor
    from sranet.runtime.results import read_results

    data, out_dir = out / "data", out / "predict"
    truth = read_truth(data / "truth.csv")
    studies = list(dict.fromkeys((r["study_id"], r["path"]) for r in truth if r["split"] == "test"))
    if not studies:
        typer.echo("no test studies; nothing to predict")
        return {"first_study": None}
    cases = [CaseInput(data / path, case_id=sid, roi_source="auto") for sid, path in studies]
    results_path, heat_dir = out_dir / "results.jsonl", out_dir / "heatmaps"
    with Predictor.from_artifact(artifact, device="cpu", threads=threads) as predictor:
        done = predict_batch(predictor, cases[:HEATMAP_STUDIES], results_path, batch=2, heatmaps=heat_dir)
        rest = predict_batch(predictor, cases[HEATMAP_STUDIES:], results_path, batch=2)
        threshold = predictor.info.threshold
    records, _ = read_results(results_path)
    summary = _score(records, truth, cache, threshold)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "summary.md").write_text(_summary_md(summary))
    p = summary["prediction"]
    auc = "n/a (one class)" if p["auc"] is None else f"{p['auc']:.3f}"
    if p.get("auc_visible") is not None:
        auc += f" ({p['auc_visible']:.3f} without stage I)"
    hit = "n/a" if p["top_patch_hit_rate"] is None else f"{p['top_patch_hit_rate']:.2f} of {p['hit_cases']}"
    typer.echo(f"{len(studies)} test studies -> {done.predicted + rest.predicted} hips predicted, "
               f"{done.refused + rest.refused} sides refused, {done.failed + rest.failed} failed -> {results_path}; "
               f"heatmaps of the first {HEATMAP_STUDIES} studies -> {heat_dir}")
    typer.echo(f"per hip from whole studies: AUC {auc} over {p['n_hips']} hips, top-attention patch on the lesion "
               f"{hit} positive hips; localisation: {summary['localisation']['line']} -> {out_dir / 'summary.json'}")
    return {"first_study": str(cases[0].source)}


def _score(records: list[dict], truth: list[dict], cache: Path, threshold: float) -> dict:
    """Per-hip scores of whole-study predictions against the phantoms' truth.

    prediction    AUC, sensitivity and specificity (at the artifact's threshold) over the hips predicted that have
                  a label (in the manifest), and the AUC without the ARCO stage I positives (invisible on CT);
                  ``top_patch_hit_rate``: share of predicted positive hips whose highest-attention patch holds
                  lesion voxels. The lesion on the network's grid comes from the
                  prepared cache, whose crop of that hip is the prediction's exactly when both ROIs agree (the same
                  localiser on the same study; checked per hip, mismatches are counted and left out).
    localisation  per truth visibility: hips, heads reported, centre error (median, p95, max, share <= 5 mm);
                  heads reported on studies without hips; sides swapped.
    refusals      the refused and failed sides of hips by error; sides refused on studies without hips.
    prepare       the hips of every split that ``prepare`` could not crop, by error (cache/failures.jsonl).
    """
    import numpy as np

    from sranet.train.metrics import auc_visible, confusion, roc_auc

    by_case = {r["case"]: r for r in records}
    test = [t for t in truth if t["split"] == "test"]
    empty = _studies_without_hips([t for t in test if _is_study_without_hips(t)], by_case)
    hips = [(t, by_case[t["case_id"]]) for t in test if not _is_study_without_hips(t) and t["case_id"] in by_case]
    refusals = _count(r["error"] for _, r in hips if "error" in r)
    vis, swapped = _localisation_errors(hips, by_case)
    labels, probs, stages, hits, mismatched = _labelled_predictions(hips, cache)
    both = len(set(labels)) == 2
    visible = auc_visible(labels, probs, stages) if both else None
    conf = confusion(np.array(labels), np.array(probs), threshold) if labels else None
    table = _localisation_table(vis)
    full = table.get("full", {})
    line = (f"{full.get('found', 0)}/{full.get('hips', 0)} fully visible heads found, median error "
            f"{full.get('median_mm')} mm, max {full.get('max_mm')} mm; {empty['heads_reported']} heads reported on "
            f"{empty['studies']} studies without hips; {swapped} sides swapped")
    return {
        "prediction": {"n_hips": len(labels), "positives": int(sum(labels)), "threshold": threshold,
                       "auc": _r(roc_auc(np.array(labels), np.array(probs))) if both else None,
                       "auc_visible": None if visible is None else _r(visible),
                       "sensitivity": _r(conf.sensitivity) if conf else None,
                       "specificity": _r(conf.specificity) if conf else None,
                       "top_patch_hit_rate": _r(float(np.mean(hits))) if hits else None, "hit_cases": len(hits),
                       "roi_mismatch_with_cache": mismatched},
        "localisation": {"by_visibility": table, "studies_without_hips": empty["studies"],
                         "heads_on_studies_without_hips": empty["heads_reported"], "sides_swapped": swapped,
                         "line": line},
        "refusals": {"hips": refusals, "studies_without_hips": empty["refused"]},
        "prepare_not_cropped": _prepare_failures(cache),
    }


def _is_study_without_hips(t: dict) -> bool:
    """A truth row that stands for a whole study without hips (one row, no case id)."""
    return t["visibility"] == "none" and not t["case_id"]


def _count(keys) -> dict[str, int]:
    """How often each key occurs, in order of first occurrence."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return counts


def _studies_without_hips(rows: list[dict], by_case: dict[str, dict]) -> dict[str, int]:
    """On studies without hips: how many, heads the localiser reported on them, sides refused for no head."""
    studies, reported, refused = 0, 0, 0
    for t in rows:
        sides = [by_case.get(f"{t['study_id']}_{s}", {}) for s in ("L", "R")]
        studies += 1
        reported += sum("localiser" in r for r in sides)
        refused += sum(r.get("error") == "NoFemoralHeadError" for r in sides)
    return {"studies": studies, "heads_reported": reported, "refused": refused}


def _localisation_errors(hips: list[tuple[dict, dict]], by_case: dict[str, dict]) -> tuple[dict[str, dict], int]:
    """Per truth visibility {"hips", "found", "errors_mm"} (the localiser's centre error per head found), and the
    number of hips whose reported head lies on the other side of the study's other reported head."""
    import numpy as np

    vis: dict[str, dict] = {}
    swapped = 0
    for t, r in hips:
        row = vis.setdefault(t["visibility"], {"hips": 0, "found": 0, "errors_mm": []})
        row["hips"] += 1
        if "localiser" not in r:
            continue
        row["found"] += 1
        centre = np.array([t["centre_x_mm"], t["centre_y_mm"], t["centre_z_mm"]])
        row["errors_mm"].append(float(np.linalg.norm(np.subtract(r["localiser"]["centre_mm"], centre))))
        other = by_case.get(f"{t['study_id']}_{'R' if t['side'] == 'L' else 'L'}", {})
        if "localiser" in other and (r["localiser"]["centre_mm"][0] > other["localiser"]["centre_mm"][0]) != (
                t["side"] == "L"):
            swapped += 1
    return vis, swapped


def _labelled_predictions(hips: list[tuple[dict, dict]], cache: Path
                          ) -> tuple[list[int], list[float], list[int | None], list[bool], int]:
    """Labels, probabilities and ARCO stages of the predicted hips that have a label in the cache; for positive hips
    whose ROI matches the cache's, whether the top-attention patch holds lesion voxels; and the count of ROI
    mismatches."""
    import numpy as np

    from sranet.data.dataset import read_cache
    from sranet.train.metrics import lesion_patches

    cached_index = read_cache(cache)
    index, grid = {c.case_id: c for c in cached_index.cases}, cached_index.grid
    labels, probs, stages, hits, mismatched = [], [], [], [], 0
    for t, r in hips:
        cached = index.get(t["case_id"])
        if "probability" not in r or cached is None or cached.label is None:
            continue
        labels.append(int(cached.label))
        probs.append(float(r["probability"]))
        stages.append(cached.stage)
        if cached.label == 1 and cached.lesion is not None:
            meta = json.loads((cache / "meta" / f"{cached.case_id}.json").read_text())
            if meta.get("roi", {}).get("roi") != r["roi"]:
                mismatched += 1
                continue
            lesion = np.load(cached.lesion)
            if lesion.any():
                hits.append(bool(lesion_patches(lesion, grid)[int(r["top_patches"][0]["patch"])]))
    return labels, probs, stages, hits, mismatched


def _localisation_table(vis: dict[str, dict]) -> dict[str, dict]:
    """Per visibility: hips, heads found, centre error median, p95, max and share within 5 mm (None when none)."""
    import numpy as np

    table = {}
    for name, row in vis.items():
        e = np.array(row["errors_mm"])
        table[name] = {"hips": row["hips"], "found": row["found"],
                       "median_mm": _r(np.median(e)) if e.size else None,
                       "p95_mm": _r(np.percentile(e, 95)) if e.size else None, "max_mm": _r(e.max()) if e.size else None,
                       "within_5mm": _r(float((e <= 5.0).mean())) if e.size else None}
    return table


def _prepare_failures(cache: Path) -> dict[str, int]:
    """The hips ``prepare`` could not crop, by error (cache/failures.jsonl; empty when there is none)."""
    failures = cache / "failures.jsonl"
    return _count(json.loads(text)["error"]
                  for text in (failures.read_text().splitlines() if failures.is_file() else []))


def _r(x) -> float | None:
    import math

    x = float(x)
    return None if not math.isfinite(x) else round(x, 4)


def _summary_md(summary: dict) -> str:
    def f(x, digits=3):
        return "-" if x is None else f"{x:.{digits}f}"

    p, loc, ref = summary["prediction"], summary["localisation"], summary["refusals"]
    refused = ", ".join(f"{n} {k}" for k, n in sorted(ref["hips"].items())) or "none"
    lines = ["| per hip, from whole studies (test split) | value |", "|---|---|",
             f"| hips predicted that have a label | {p['n_hips']} ({p['positives']} positive) |",
             f"| AUC | {f(p['auc'])} |",
             f"| AUC without the stage-I positives (invisible on CT) | {f(p.get('auc_visible'))} |",
             f"| sensitivity / specificity at the artifact's threshold {p['threshold']:.3f} | "
             f"{f(p['sensitivity'])} / {f(p['specificity'])} |",
             f"| top-attention patch on the lesion | {f(p['top_patch_hit_rate'], 2)} of {p['hit_cases']} positive hips |",
             f"| hips refused | {refused} |",
             f"| studies without hips | {loc['studies_without_hips']}: {ref['studies_without_hips']} sides refused "
             f"(NoFemoralHeadError), {loc['heads_on_studies_without_hips']} heads reported |", "",
             "| truth visibility of the hip | hips | heads found | median error mm | p95 mm | max mm | share <= 5 mm |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in loc["by_visibility"].items():
        lines.append(f"| {name} | {row['hips']} | {row['found']} | {f(row['median_mm'], 2)} | {f(row['p95_mm'], 2)} | "
                     f"{f(row['max_mm'], 2)} | {f(row['within_5mm'], 2)} |")
    prep = ", ".join(f"{n} {k}" for k, n in sorted(summary["prepare_not_cropped"].items())) or "none"
    lines += ["", f"Sides swapped: {loc['sides_swapped']}. Hips of all splits that `prepare` did not crop: {prep}.", ""]
    return "\n".join(lines)


def _benchmark(out: Path, model: Path, summary: dict, *, threads: int | None, quick: bool) -> None:
    """A short benchmark of the ONNX artifact: model-only, and the first test study end to end (read, locate, both
    hips)."""
    from sranet.bench.report import to_markdown, write_json
    from sranet.bench.runner import EndToEnd, Settings, run_benchmark
    from sranet.errors import InputError

    settings = Settings(batches=(1,), warmup_s=0.2 if quick else 1.0, warmup_iters=1 if quick else 2,
                        min_iters=3 if quick else 10, duration_s=0.5 if quick else 5.0, threads=threads)
    case = EndToEnd(summary["first_study"]) if summary["first_study"] else None
    argv = ["sranet", "demo", "--out", str(out)] + (["--quick"] if quick else [])
    try:
        doc = run_benchmark([str(model)], settings, case=case, argv=argv)
    except InputError as exc:  # the first test study holds no hip: time the model alone
        typer.echo(f"end-to-end case skipped: {exc}")
        doc = run_benchmark([str(model)], settings, argv=argv)
    bench_path = write_json(doc, out / "benchmark.json")
    typer.echo(to_markdown(doc))
    typer.echo(f"(short run on this machine; `sranet benchmark` measures properly) -> {bench_path}")
