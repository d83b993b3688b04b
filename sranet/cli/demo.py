"""``sranet demo``: the README's main job as one command, on synthetic phantoms.

synthesise -> prepare -> train (the "small" model, demo_train_config()) -> evaluate -> export ONNX (parity gated)
-> predict the test split with the ONNX artifact -> a short latency benchmark. Prints where each artefact went and
the headline numbers. About 5 minutes on a quiet 2-core CPU; ``--quick`` (tiny everything, for tests) well under one.

The demo defaults: 160 phantoms split 60/20/20 (96 train, 32 val, 32 test, so the test AUC means something) and
an explicit bone window for preprocessing (``DEMO_WINDOW_HU``, z-scored): air and fat are clipped to -200 HU, so
the normalisation no longer depends on how much air a crop holds. The library default (-1000..2000 HU) is unchanged;
the window travels with the weights, so prediction uses the same one.
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
    threads: ThreadsOpt = 0,
) -> None:
    """Run the whole path on synthetic data: synth, prepare, train, evaluate, export, predict, benchmark."""
    import dataclasses

    from sranet.errors import InputError

    n_cases = cases if cases is not None else (12 if quick else DEMO_CASES)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; the demo will not overwrite it.",
                         hint="Choose a new --out, or delete the folder.")
    out.mkdir(parents=True, exist_ok=True)
    show = progress_enabled()
    say = typer.echo
    t_start = time.perf_counter()
    timings_s: dict[str, float] = {}

    def step(name: str):
        timings_s[name] = time.perf_counter()
        say(f"\n== {name}")

    def done(name: str) -> None:
        timings_s[name] = time.perf_counter() - timings_s[name]

    # 1. synthesise
    from sranet.data.synthetic_dataset import write_dataset

    step("synthesise")
    shape = (48, 64, 64) if quick else (80, 112, 112)
    workers = 1 if quick else 2
    manifest = write_dataset(out / "data", n_cases, seed=seed, shape=shape, workers=workers, progress=show,
                             split_fractions=DEMO_SPLITS)
    say(f"{n_cases} phantom CT series (DICOM) + manifest -> {manifest}")
    done("synthesise")

    # 2. prepare
    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.data.prepare import prepare_cache
    from sranet.train.loop import demo_train_config

    train_cfg = demo_train_config()
    if quick:
        train_cfg = dataclasses.replace(train_cfg, model="tiny", epochs=2, batch_size=4)
    model_cfg = ModelConfig.preset(train_cfg.model)
    step("prepare")
    cache = out / "cache"
    preprocess_cfg = PreprocessConfig.for_model(model_cfg, window_hu=DEMO_WINDOW_HU)
    prepared = prepare_cache(manifest, cache, preprocess_cfg, grid=model_cfg.grid,
                             workers=workers, progress=show)
    failed = f", {len(prepared.failures)} failed (see {cache})" if prepared.failures else ""
    say(f"{len(prepared.done)} cases -> {model_cfg.input_size}^3 network inputs + bone masks{failed} -> {cache}")
    done("prepare")

    # 3. train
    from sranet.train.loop import train

    step("train")
    result = train(train_cfg, cache, out / "run", progress=show, log=say)
    say(f"best epoch {result.best_epoch} (val AUC {result.best_val_auc:.3f}, threshold {result.threshold:.3f}) "
        f"-> {result.best_path}")
    done("train")

    # 4. evaluate
    from sranet.train.evaluate import evaluate

    step("evaluate")
    metrics = evaluate(result.best_path, cache, "test", out / "eval")
    say(f"test split: {_metrics_line(metrics)} -> {out / 'eval'}")
    done("evaluate")

    # 5. export (the exporter refuses to write a model that fails its parity gate)
    from sranet.export.onnx import export_onnx

    step("export")
    exported = export_onnx(result.best_path, out / "model.onnx", log=say)
    say(f"ONNX (opset {exported.opset}, parity gate passed) -> {exported.path}; report -> {exported.parity_path}")
    done("export")

    # 6. predict the test split with the exported artifact (no torch on this path)
    step("predict")
    predict_summary = _predict_test_split(exported.path, manifest, out / "predict", threads=threads)
    say(f"{predict_summary['done']} test cases, {predict_summary['failed']} failed, accuracy "
        f"{predict_summary['accuracy']:.3f} -> {predict_summary['results']}; heatmaps -> {predict_summary['heatmaps']}")
    done("predict")

    # 7. a short benchmark: the ONNX artifact, end to end on one phantom and model-only
    from sranet.bench.report import to_markdown, write_json
    from sranet.bench.runner import Settings, run_benchmark

    step("benchmark")
    settings = Settings(batches=(1,), warmup_s=0.2 if quick else 1.0, warmup_iters=1 if quick else 2,
                        min_iters=3 if quick else 10, duration_s=0.5 if quick else 5.0, threads=threads)
    doc = run_benchmark([str(exported.path)], settings, case=predict_summary["first_case"], roi=predict_summary["first_roi"],
                        argv=["sranet", "demo", "--out", str(out)] + (["--quick"] if quick else []))
    bench_path = write_json(doc, out / "benchmark.json")
    say(to_markdown(doc))
    say(f"(short run on this machine; `sranet benchmark` measures properly) -> {bench_path}")
    done("benchmark")

    total = time.perf_counter() - t_start
    say("\n== done in " + f"{total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings_s.items()) + ")")
    say(f"artefacts under {out}: data/, cache/, run/best.pt, eval/, model.onnx, predict/results.jsonl, benchmark.json")


def _metrics_line(metrics: dict) -> str:
    keys = ("auc", "sensitivity", "specificity", "accuracy")
    flat = metrics.get("metrics", metrics)
    parts = [f"{k} {flat[k]:.3f}" for k in keys if isinstance(flat.get(k), (int, float))]
    return ", ".join(parts) or "see metrics.json"


def _predict_test_split(artifact: Path, manifest: Path, out_dir: Path, *, threads: int, heatmaps: int = 4) -> dict:
    """Predict the manifest's test cases with ``artifact`` (ONNX Runtime, CPU): results JSONL + a few heatmaps."""
    from sranet.data.manifest import read_manifest
    from sranet.runtime.heatmap import write_heatmaps
    from sranet.runtime.predictor import CaseInput, Predictor
    from sranet.runtime.results import ResultsWriter
    from sranet.runtime.roi import parse_roi

    test = [c for c in read_manifest(manifest) if c.split == "test"]
    labels = {}
    inputs = []
    for c in test:
        case = CaseInput(c.path, case_id=c.case_id, roi=parse_roi(c.roi, c.side) if c.roi else None)
        labels[case.key] = c.label
        inputs.append(case)
    results_path, heat_dir = out_dir / "results.jsonl", out_dir / "heatmaps"
    n_done = n_failed = correct = 0
    with Predictor.from_artifact(artifact, providers="cpu", threads=threads) as predictor, \
            ResultsWriter(results_path) as writer:
        for case, result in predictor.predict_many(inputs, batch=4):
            if isinstance(result, Exception):
                n_failed += 1
                writer.write({"case": case.key, "error": type(result).__name__, "message": str(result)})
                continue
            record = result.to_record()
            if n_done < heatmaps:
                record["heatmaps"] = write_heatmaps(result, heat_dir, predictor.info.model.input_size)
            record["label"] = labels.get(case.key)
            writer.write(record)
            n_done += 1
            correct += int(record["label"] is not None and int(record["decision"]) == record["label"])
    return {"done": n_done, "failed": n_failed, "accuracy": correct / max(1, n_done), "results": results_path,
            "heatmaps": heat_dir, "first_case": test[0].path if test else None, "first_roi": test[0].roi if test else None}
