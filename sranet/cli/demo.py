"""``sranet demo``: the README's main job as one command, on synthetic phantoms.

synthesise -> prepare -> train (the "small" model, demo_train_config()) -> evaluate -> export ONNX (parity gated)
-> predict the test split with the ONNX artifact -> a short latency benchmark. Prints where each artefact went and
the headline numbers. About 5 minutes on a quiet 2-core CPU; ``--quick`` (tiny everything, for tests) well under one.

The demo defaults: 160 phantoms split 60/20/20 (96 train, 32 val, 32 test, so the test AUC means something) and
an explicit bone window for preprocessing (``DEMO_WINDOW_HU``, z-scored): air and fat are clipped to -200 HU, so
the normalisation does not depend on how much air a crop holds. The library's default window is -1000..2000 HU; the
window travels with the weights, so prediction uses the same one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import ThreadsOpt, cli_errors, progress_enabled

DEMO_CASES = 160
DEMO_SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}
DEMO_WINDOW_HU = (-200.0, 1300.0)  # bone window, z-scored per volume (see the module docstring)


@cli_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo writes (must be new or empty).")] = Path("runs/demo"),
    cases: Annotated[int | None, typer.Option("--cases", min=8, help="Synthetic cases to generate (default 160; 12 with --quick).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny model, tiny volumes, 2 epochs: checks the path, not the model.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for the phantoms and training.")] = 0,
    threads: ThreadsOpt = None,
) -> None:
    """Run the whole path on synthetic data: synth, prepare, train, evaluate, export, predict, benchmark."""
    from sranet.errors import InputError

    n_cases = cases if cases is not None else (12 if quick else DEMO_CASES)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; the demo will not overwrite it.",
                         hint="Choose a new --out, or delete the folder.")
    out.mkdir(parents=True, exist_ok=True)
    steps = _Steps()
    manifest = steps.run("synthesise", _synthesise, out, n_cases, seed=seed, quick=quick)
    cache, train_cfg = steps.run("prepare", _prepare, out, manifest, quick=quick)
    best = steps.run("train", _train, out, cache, train_cfg)
    steps.run("evaluate", _evaluate, out, best, cache)
    model = steps.run("export", _export, out, best)
    summary = steps.run("predict", _predict_test_split, model, manifest, out / "predict", threads=threads)
    steps.run("benchmark", _benchmark, out, model, summary, threads=threads, quick=quick)
    steps.report()
    typer.echo(f"artefacts under {out}: data/, cache/, run/best.pt, eval/, model.onnx, predict/results.jsonl, "
               "benchmark.json")


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

    def report(self) -> None:
        total = time.perf_counter() - self.start
        typer.echo(f"\n== done in {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items()) + ")")


def _synthesise(out: Path, n_cases: int, *, seed: int, quick: bool) -> Path:
    """Phantom CT series (DICOM) and their manifest under out/data; returns the manifest."""
    from sranet.data.synthetic_dataset import write_dataset

    shape = (48, 64, 64) if quick else (80, 112, 112)
    manifest = write_dataset(out / "data", n_cases, seed=seed, shape=shape, workers=1 if quick else 2,
                             progress=progress_enabled(), split_fractions=DEMO_SPLITS)
    typer.echo(f"{n_cases} phantom CT series (DICOM) + manifest -> {manifest}")
    return manifest


def _prepare(out: Path, manifest: Path, *, quick: bool):
    """The prepared cache under out/cache (the demo's bone window); returns (cache folder, training config)."""
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
    failed = f", {len(prepared.failures)} failed (see {cache})" if prepared.failures else ""
    typer.echo(f"{len(prepared.done)} cases -> {model_cfg.input_size}^3 network inputs + bone masks{failed} -> {cache}")
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
    typer.echo(f"test split: {_metrics_line(metrics)} -> {out / 'eval'}")


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


def _predict_test_split(artifact: Path, manifest: Path, out_dir: Path, *, threads: int | None,
                        heatmaps: int = 4) -> dict:
    """Predict the manifest's test cases with ``artifact`` (ONNX Runtime on the CPU, no torch on this path):
    results JSONL with each case's label, and heatmaps for the first few."""
    from sranet.runtime.batch import cases_from, predict_batch
    from sranet.runtime.manifest import read_manifest
    from sranet.runtime.predictor import Predictor
    from sranet.runtime.results import read_results

    rows = [c for c in read_manifest(manifest) if c.split == "test"]
    labels = {c.case_id: c.label for c in rows}
    if not rows:
        typer.echo(f"no test cases in {manifest}; nothing to predict")
        return {"first_case": None, "first_roi": None}
    test = cases_from(manifest=manifest, split="test")
    results_path, heat_dir = out_dir / "results.jsonl", out_dir / "heatmaps"
    with Predictor.from_artifact(artifact, device="cpu", threads=threads) as predictor:
        summary = predict_batch(predictor, test, results_path, batch=4, heatmaps=heat_dir, heatmap_limit=heatmaps,
                                annotate=lambda case: {"label": labels.get(case.case_id)})
    records, _ = read_results(results_path)
    done = [r for r in records if "error" not in r]
    correct = sum(int(r["label"] is not None and int(r["decision"]) == r["label"]) for r in done)
    typer.echo(f"{summary.predicted} test cases, {summary.failed} failed, accuracy {correct / max(1, len(done)):.3f} "
               f"-> {results_path}; heatmaps -> {heat_dir}")
    return {"first_case": rows[0].path if rows else None, "first_roi": rows[0].roi if rows else None}


def _benchmark(out: Path, model: Path, summary: dict, *, threads: int | None, quick: bool) -> None:
    """A short benchmark of the ONNX artifact: model-only, and end to end on the first test case."""
    from sranet.bench.report import to_markdown, write_json
    from sranet.bench.runner import EndToEnd, Settings, run_benchmark

    settings = Settings(batches=(1,), warmup_s=0.2 if quick else 1.0, warmup_iters=1 if quick else 2,
                        min_iters=3 if quick else 10, duration_s=0.5 if quick else 5.0, threads=threads)
    case = EndToEnd(summary["first_case"], roi=summary["first_roi"]) if summary["first_case"] else None
    doc = run_benchmark([str(model)], settings, case=case,
                        argv=["sranet", "demo", "--out", str(out)] + (["--quick"] if quick else []))
    bench_path = write_json(doc, out / "benchmark.json")
    typer.echo(to_markdown(doc))
    typer.echo(f"(short run on this machine; `sranet benchmark` measures properly) -> {bench_path}")
