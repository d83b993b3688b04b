"""Does training converge for every seed? A seed sweep of ``sranet train`` on the demo's synthetic phantoms.

For each seed: train (the small configuration: ``demo_train_config()``, what ``sranet demo`` trains; the paper
configuration: ``TrainConfig()``, the defaults of ``sranet train``), evaluate the best checkpoint on the held-out
test split, and record test AUC, sensitivity, specificity, the top-attention patch's lesion hit rate over
visible-lesion positives, the epoch at which validation AUC first reached 0.9, wall time (training and validation
summed over epochs; checkpoint writes left out) and training volumes/s.

The data are the demo's (``--data pelvis``, the default): 100 whole-pelvis phantom studies, each hip cropped around
the femoral head the localiser finds, 60/20/20 splits by study; or 160 single-hip phantoms (``--data hips``). They
are prepared with the demo's bone window at the model's input size, generated once under --work and reused. With
``--vary-data`` the phantoms' seed follows the training seed, as ``sranet demo --seed S`` does (one data set per
seed); otherwise every seed trains on the phantoms of ``--data-seed``.

    .venv/bin/python benchmarks/train_seeds.py --config small --seeds 0,1,2,3,4
    .venv/bin/python benchmarks/train_seeds.py --config small --seeds 0,1,2 --vary-data      # `sranet demo --seed S`
    .venv/bin/python benchmarks/train_seeds.py --config paper --seeds 0,1 --epochs 40
    .venv/bin/python benchmarks/train_seeds.py --tables      # rewrite the tables in docs/training.md and README.md
    .venv/bin/python benchmarks/train_seeds.py --init-probe  # fresh models per init scheme -> train_init_probe.json
    .venv/bin/python benchmarks/train_seeds.py --shortcut-probe RUN...  # where best.pt's zero-weight patch falls

Writes benchmarks/results/train_seeds_<config>[_<tag>].json (machine, versions, command, date, the training
config, per-seed results, the load average at the start and end of each seed: other processes on the machine
slow the wall times down, never the metrics). CPU timings on a shared machine are labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
AUC_REACHED = 0.9
SYNTH_SHAPE = (80, 112, 112)  # the demo's phantom shape (sranet/cli/demo.py)
RECIPE_KEYS = ("model", "epochs", "lr", "batch_size", "init", "warmup_epochs", "grad_clip", "sampler", "augment",
               "augment_mode", "instance_weight", "select")


def train_config(name: str, epochs: int | None, overrides: dict[str, Any]):
    from sranet.train.config import TrainConfig
    from sranet.train.loop import demo_train_config

    cfg = demo_train_config() if name == "small" else TrainConfig()
    if epochs is not None:
        cfg = cfg.replace(epochs=epochs)
    return cfg.replace(**overrides) if overrides else cfg


def prepare_data(work: Path, data_seed: int, model: str, cases: int, data: str = "pelvis") -> Path:
    """The demo's data at ``model``'s input size, generated once under ``work`` and reused.

    pelvis  ``sranet demo``'s: ``cases`` whole-pelvis studies (DICOM, 15% without hips), each hip cropped around
            the femoral head the localiser finds (no ROI given), 60/20/20 splits by study.
    hips    single-hip phantoms (``sranet synth``, shape SYNTH_SHAPE) with their ROI, 60/20/20 splits.
    """
    from sranet.cli.demo import DEMO_SPLITS, DEMO_WINDOW_HU
    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.data.prepare import prepare_cache

    model_cfg = ModelConfig.preset(model)
    root = work / f"data-{data}-{data_seed}-{cases}"
    manifest = root / "synth" / "manifest.csv"
    if not manifest.is_file():
        if data == "pelvis":
            from sranet.data.synthetic_pelvis_dataset import DEFAULT_NEGATIVES, write_pelvis_dataset

            write_pelvis_dataset(root / "synth", cases, seed=data_seed, preset="256", negatives=DEFAULT_NEGATIVES,
                                 split_fractions=DEMO_SPLITS, workers=2)
        else:
            from sranet.data.synthetic_dataset import write_dataset

            write_dataset(root / "synth", cases, seed=data_seed, shape=SYNTH_SHAPE, workers=2,
                          split_fractions=DEMO_SPLITS)
    cache = root / f"cache-{model_cfg.input_size}"
    if not (cache / "cases.csv").is_file():
        prepared = prepare_cache(manifest, cache, PreprocessConfig.for_model(model_cfg, window_hu=DEMO_WINDOW_HU),
                                 grid=model_cfg.grid, workers=2)
        if prepared.failures and data == "hips":
            raise SystemExit(f"{len(prepared.failures)} phantoms failed to prepare; see {cache}")
    return cache


def epochs_to(history: list[dict[str, Any]], key: str, level: float) -> int | None:
    """First epoch whose ``key`` is >= level, or None."""
    return next((r["epoch"] for r in history if (r.get(key) is not None and r[key] >= level)), None)


def auc_ceiling(cache: Path, split: str) -> float | None:
    """The expected AUC of an oracle on ``split`` that calls every CT-visible positive and nothing else: ARCO
    stage I positives are invisible on CT by definition, so they rank among the negatives at random (1/2 a pair)."""
    from sranet.data.dataset import read_cache

    cases = read_cache(cache).split(split)
    positives = [c for c in cases if c.label == 1]
    if not positives or len(positives) == len(cases):
        return None
    invisible = sum(c.stage == 1 for c in positives)
    return 1.0 - 0.5 * invisible / len(positives)


def lesion_cut_rates(cache: Path, draws: int = 4, cut_fraction: float = 0.1) -> dict[str, dict[str, float]]:
    """Per augmentation mode, over (visible-lesion training positive, draw) pairs: the share whose crop loses more
    than ``cut_fraction`` of the lesion, and the smallest kept fraction (lesion voxels after the warp against the
    count the zoom alone would give)."""
    import numpy as np

    from sranet.data.augment import AugmentConfig, augment, random_transform
    from sranet.data.dataset import CachedDataset, read_cache

    ds = CachedDataset(read_cache(cache), "train")
    lesions = [(i, les) for i in range(len(ds)) if (les := ds.load_lesion(i)) is not None and les.any()]
    rates = {}
    for mode in ("crop_zoom", "head_crop_zoom"):
        cfg = AugmentConfig(mode=mode, flip_prob=0.0)
        kept = []
        for i, lesion in lesions:
            for d in range(draws):
                zoom = 1.0 / random_transform(cfg, np.random.default_rng([i, d]))[0, 0]
                _, warped = augment(lesion.astype(np.float32), lesion * 255, cfg, np.random.default_rng([i, d]))
                kept.append(float((warped > 0).sum() / (lesion.sum() * zoom**3)))
        rates[mode] = {"cut_share": float(np.mean(np.array(kept) < 1 - cut_fraction)), "min_kept": min(kept),
                       "pairs": len(kept)}
    return rates


def test_every_epoch(cache: Path, device: str):
    """An ``on_epoch`` callback that scores the model on the test split after every epoch (analysis only: the
    checkpoint is chosen on validation as always). Returns (callback, {epoch: test AUC})."""
    from sranet.data.dataset import CachedDataset, read_cache
    from sranet.train.distributed import resolve_device
    from sranet.train.metrics import roc_auc
    from sranet.train.predict import predict_split

    test_set = CachedDataset(read_cache(cache), "test")
    aucs: dict[int, float] = {}

    def on_epoch(record, model):
        pred = predict_split(model, test_set, resolve_device(device), None, 8)
        aucs[record["epoch"]] = roc_auc(pred.labels, pred.probs)

    return on_epoch, aucs


def selected_epochs(history: list[dict[str, Any]]) -> dict[str, int]:
    """The epoch each selection rule picks from the validation records (as sranet.train.loop does)."""
    validated = [r for r in history if r.get("val_auc") is not None]
    by_auc = max(validated, key=lambda r: (r["val_auc"], -r["val_loss"], -r["epoch"]))
    def visible(r):  # the AUC without stage I, as the loop's val_auc_visible rule reads it
        return r["val_auc"] if r.get("val_auc_visible") is None else r["val_auc_visible"]

    by_visible = max(validated, key=lambda r: (visible(r), r["val_auc"], -r["val_loss"], -r["epoch"]))
    by_loss = min(validated, key=lambda r: (r["val_loss_classification"], r["epoch"]))
    return {"val_auc": by_auc["epoch"], "val_auc_visible": by_visible["epoch"], "val_loss": by_loss["epoch"],
            "last": history[-1]["epoch"]}


def run_seed(cfg, cache: Path, run_dir: Path, data_seed: int, resume: bool, every_epoch: bool) -> dict[str, Any]:
    from sranet.train.evaluate import evaluate
    from sranet.train.loop import train

    load_start = os.getloadavg()[0]
    resumed_at = _epochs_done(run_dir) if resume else 0
    earlier = run_dir / "sweep_seed.json"  # what the invocation that trained these epochs recorded
    earlier_load = json.loads(earlier.read_text())["load_average_1min"] if resume and earlier.is_file() else None
    on_epoch, test_aucs = test_every_epoch(cache, cfg.device) if every_epoch else (None, {})
    result = train(cfg, cache, run_dir, resume=resumed_at > 0, on_epoch=on_epoch,
                   log=lambda line: print(f"  seed {cfg.seed}: {line}", flush=True))
    wall_s = sum(r.get("train_seconds", 0.0) + r.get("val_seconds", 0.0) for r in result.history)
    metrics = evaluate(result.best_path, cache, "test", run_dir / "eval", overlays=0)
    loc = metrics["localisation_visible"]
    history = result.history
    train_s = sum(r.get("train_seconds", 0.0) for r in history)
    volumes = sum(r.get("train_volumes", 0) for r in history)
    record = {
        "seed": cfg.seed,
        "data_seed": data_seed,
        "test_auc": metrics["auc"],
        "test_auc_visible": metrics["auc_visible"],
        "test_sensitivity": metrics["sensitivity"],
        "test_specificity": metrics["specificity"],
        "test_accuracy": metrics["accuracy"],
        "test_n": metrics["n"],
        "test_n_positive": metrics["n_positive"],
        "top_patch_hit_rate": loc["top_patch_hit_rate"],
        "bottom_patch_hit_rate": loc["bottom_patch_hit_rate"],
        "lesion_cases": loc["n_cases"],
        "top_patch_hit_rate_all_lesion_masks": metrics["localisation"]["top_patch_hit_rate"],
        "lesion_attention_mass": loc["lesion_attention_mass"],
        "lesion_chance_level": loc["chance_level"],
        "best_epoch": result.best_epoch,
        "best_val_auc": result.best_val_auc,
        "epochs_to_val_auc_0.9": epochs_to(history, "val_auc", AUC_REACHED),
        "epochs_to_val_auc_visible_0.9": epochs_to(history, "val_auc_visible", AUC_REACHED),
        "val_auc_ceiling": auc_ceiling(cache, "val"),
        "test_auc_ceiling": auc_ceiling(cache, "test"),
        "epochs": len(history),
        "wall_s": round(wall_s, 1),
        "train_s": round(train_s, 1),
        "train_volumes_per_s": round(volumes / train_s, 2) if train_s else None,
        "load_average_1min": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "resumed_after_epoch": resumed_at,  # > 0: those epochs ran in an earlier invocation, under another load
        "load_average_1min_earlier": earlier_load,
        "history": [compact(r) for r in history],
    }
    if test_aucs:  # analysis: what the test AUC was at each epoch, and at the epoch each selection rule picks
        record["test_auc_by_epoch"] = [round(test_aucs[r["epoch"]], 4) if r["epoch"] in test_aucs else None
                                       for r in history]
        record["test_auc_if_selected_by"] = {rule: test_aucs.get(epoch)
                                             for rule, epoch in selected_epochs(history).items()}
    earlier.write_text(json.dumps(record, indent=2) + "\n")
    return record


HISTORY_KEYS = ("train_loss_classification", "train_loss_structure", "train_loss_instance", "val_auc",
                "val_auc_visible", "val_top_patch_hit_rate", "val_bottom_patch_hit_rate", "attn_effective_patches",
                "attn_top_share", "attn_logit_range", "attn_onehot_share", "attn_uniform_share", "train_target_share",
                "grad_norm_total", "grad_clipped_share", "train_seconds")


def compact(record: dict[str, Any]) -> dict[str, Any]:
    """The per-epoch diagnostics the sweep keeps (metrics.jsonl has them all), rounded."""
    out: dict[str, Any] = {"epoch": record["epoch"]}
    for key in HISTORY_KEYS:
        value = record.get(key)
        out[key] = round(value, 4) if isinstance(value, float) else value
    for key in ("dead_relu", "grad_norm"):
        out[key] = {k: round(v, 4) for k, v in (record.get(key) or {}).items()}
    return out


def _epochs_done(run_dir: Path) -> int:
    """Epochs an earlier invocation completed in ``run_dir`` (0 when it has no last.pt)."""
    metrics = run_dir / "metrics.jsonl"
    if not (run_dir / "last.pt").is_file() or not metrics.is_file():
        return 0
    return sum(1 for line in metrics.read_text().splitlines() if line.strip())


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    aucs = sorted(r["test_auc"] for r in results)
    hits = [r["top_patch_hit_rate"] for r in results if r["top_patch_hit_rate"] is not None]
    by_rule = {}
    for rule in ("val_loss", "last"):
        picked = [r["test_auc_if_selected_by"][rule] for r in results if "test_auc_if_selected_by" in r]
        if picked and None not in picked:
            by_rule[f"seeds_test_auc_ge_0.95_if_selected_by_{rule}"] = sum(a >= 0.95 for a in picked)
    return {
        **by_rule,
        "seeds_test_auc_visible_eq_1": sum(r["test_auc_visible"] == 1.0 for r in results),
        "seeds_test_auc_visible_ge_0.95": sum((r["test_auc_visible"] or 0) >= 0.95 for r in results),
        "seeds_test_auc_at_ceiling": sum(r["test_auc"] >= (r["test_auc_ceiling"] or 1) - 1e-9 for r in results),
        "seeds": len(results),
        "test_auc_min": aucs[0],
        "test_auc_median": aucs[len(aucs) // 2],
        "seeds_test_auc_ge_0.95": sum(a >= 0.95 for a in aucs),
        "top_patch_hit_rate_min": min(hits) if hits else None,
        "seeds_hit_ge_0.8": sum(h >= 0.8 for h in hits),
        "train_volumes_per_s_median": sorted(r["train_volumes_per_s"] for r in results)[len(results) // 2],
    }


def sweep(args) -> Path:
    from sranet.bench.env import collect_environment, machine_label

    overrides = json.loads(args.set) if args.set else {}
    cfg = train_config(args.config, args.epochs, overrides)
    env = collect_environment(argv=[Path(sys.executable).name, *sys.argv])
    work = Path(args.work)
    results = []
    for seed in args.seeds:
        data_seed = seed if args.vary_data else args.data_seed
        cache = prepare_data(work, data_seed, cfg.model, args.cases, args.data)
        run_dir = work / f"{args.config}{'-' + args.tag if args.tag else ''}-d{data_seed}-s{seed}"
        if run_dir.exists() and not args.resume:
            import shutil

            shutil.rmtree(run_dir)
        every_epoch = args.test_every_epoch if args.test_every_epoch is not None else args.config == "small"
        r = run_seed(cfg.replace(seed=seed), cache, run_dir, data_seed, args.resume, every_epoch)
        print(f"seed {seed}: test AUC {r['test_auc']:.3f}, sens {r['test_sensitivity']:.2f}, spec "
              f"{r['test_specificity']:.2f}, top patch in lesion {r['top_patch_hit_rate']}, val AUC >= 0.9 at epoch "
              f"{r['epochs_to_val_auc_0.9']}, {r['wall_s']:.0f} s", flush=True)
        results.append(r)
    doc = {
        "benchmark": "train_seeds",
        "what": "seed sweep of sranet train on the demo's synthetic phantoms; test metrics of the best-val checkpoint",
        "device": cfg.device,
        "machine": machine_label(env, gpu=cfg.device != "cpu"),
        "environment": env,
        "shared_machine_note": "wall times were taken while other jobs shared the CPU cores; see load_average_1min "
                               "per seed (1-minute load; the machine has "
                               f"{os.cpu_count()} logical cores). Metrics do not depend on the load.",
        "data": {"kind": args.data, "phantoms": args.cases,
                 "shape": "whole-pelvis studies, preset 256" if args.data == "pelvis" else list(SYNTH_SHAPE),
                 "splits": "60/20/20 (train/val/test)",
                 "window_hu": "demo bone window", "data_seed": None if args.vary_data else args.data_seed,
                 "vary_data": args.vary_data,
                 "lesion_cut_rate": lesion_cut_rates(prepare_data(work, args.data_seed, cfg.model, args.cases,
                                                                  args.data)),
                 "lesion_cut_rate_definition": "per augmentation mode, over (visible-lesion training positive, draw) "
                                               "pairs: share whose crop loses more than 10% of the lesion, and the "
                                               "smallest kept fraction"},
        "config": args.config,
        "train_config": cfg.replace(seed=-1).to_dict(),
        "results": results,
        "summary": summarise(results),
    }
    out = Path(args.out) if args.out else RESULTS / f"train_seeds_{args.config}{'_' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def merge(paths: list[Path], out: Path) -> Path:
    """One sweep document from per-seed documents of the same configuration (seeds run as separate processes,
    e.g. one per core): results joined in seed order, the summary recomputed, each part's command kept."""
    docs = [json.loads(p.read_text()) for p in paths]
    first = docs[0]

    def settings(d):  # the number of epochs may differ per seed (each result records its own)
        return d["config"], {k: v for k, v in d["train_config"].items() if k != "epochs"}, d["data"]

    for d in docs[1:]:
        if settings(d) != settings(first):
            raise SystemExit(f"cannot merge: {paths[0]} and the others differ in config, training settings or data")
    results = sorted((r for d in docs for r in d["results"]), key=lambda r: r["seed"])
    epochs = sorted({d["train_config"]["epochs"] for d in docs})
    doc = {**first, "results": results, "summary": summarise(results),
           "train_config": {**first["train_config"], "epochs": epochs[0] if len(epochs) == 1 else epochs},
           "parts": [{"file": p.name, "command": d["environment"]["command"], "date_utc": d["environment"]["date_utc"]}
                     for p, d in zip(paths, docs, strict=True)]}
    doc["environment"] = {**first["environment"], "command": " ; ".join(d["environment"]["command"] for d in docs)}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out} ({len(results)} seeds from {len(docs)} files)")
    return out


def init_probe(cache: Path, preset: str, volumes: int = 8) -> list[dict[str, Any]]:
    """The state a fresh model starts from, per initialisation scheme, on ``volumes`` validation phantoms: the patch
    embedding's scale, how much the logit varies across volumes, the attention's spread, and the gradient norm of
    l_c alone per block (what the classifier can move at step one)."""
    import torch

    from sranet.config import INIT_SCHEMES, ModelConfig
    from sranet.data.dataset import CachedDataset, read_cache
    from sranet.model.sranet import SRANet, initialize, patchify
    from sranet.train.diagnostics import attention_stats, gradient_blocks

    ds = CachedDataset(read_cache(cache), "val")
    items = [ds[i] for i in range(0, len(ds), max(1, len(ds) // volumes))][:volumes]
    x = torch.stack([t["volume"] for t in items])
    y = torch.stack([t["label"] for t in items])
    rows = []
    for scheme in INIT_SCHEMES:
        torch.manual_seed(0)
        model = initialize(SRANet(ModelConfig.preset(preset)), scheme)
        out = model(x)
        torch.nn.functional.binary_cross_entropy_with_logits(out.logit, y).backward()
        with torch.no_grad():
            h = model.patch_cnn(patchify(x, model.cfg.grid))  # (B*N, M)
        attn = attention_stats(out.attention.detach().numpy(), out.attention_logits.detach().numpy())
        rows.append({"init": scheme, "volumes": len(items), "embedding_rms": float(h.pow(2).mean().sqrt()),
                     "logit_std_across_volumes": float(out.logit.std()),
                     "attn_effective_patches": attn["attn_effective_patches"],
                     "attn_logit_range": attn["attn_logit_range"],
                     "grad_norm_l_c": {k: float(torch.cat([p.grad.flatten() for p in v]).norm())
                                       for k, v in gradient_blocks(model).items()}})
        print(preset, rows[-1], flush=True)
    return rows


def probe(args) -> Path:
    from sranet.bench.env import collect_environment, machine_label

    env = collect_environment(argv=[Path(sys.executable).name, *sys.argv])
    results = {}
    for name in ("small", "paper"):
        cfg = train_config(name, None, {})
        results[name] = init_probe(prepare_data(Path(args.work), args.data_seed, cfg.model, args.cases, args.data),
                                   cfg.model)
    doc = {"benchmark": "train_init_probe", "what": "a fresh model on 8 validation phantoms, per init scheme",
           "machine": machine_label(env, gpu=False), "environment": env, "results": results}
    out = Path(args.out) if args.out else RESULTS / "train_init_probe.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def shortcut_probe(args) -> Path:
    """Per finished run folder: its best checkpoint on the test split, the top- and the zero-weight patch's lesion
    hit rates over visible-lesion positives. A zero-weight patch in the lesion for (nearly) every positive is the
    min-shift shortcut: the attention detects the lesion by switching it off (docs/training.md)."""
    from sranet.bench.env import collect_environment, machine_label
    from sranet.model.checkpoint import load_checkpoint
    from sranet.train.evaluate import evaluate

    env = collect_environment(argv=[Path(sys.executable).name, *sys.argv])
    rows = []
    for run in args.shortcut_probe:
        train_cfg = load_checkpoint(run / "best.pt").train_config
        cache = prepare_data(Path(args.work), args.data_seed, train_cfg["model"], args.cases, args.data)
        metrics = evaluate(run / "best.pt", cache, "test", run / "eval", overlays=0)
        loc = metrics["localisation_visible"]
        rows.append({"run": run.name, "seed": train_cfg["seed"],
                     "train_config": {k: train_cfg.get(k) for k in RECIPE_KEYS},
                     "test_auc": metrics["auc"], "test_auc_visible": metrics["auc_visible"],
                     "lesion_cases": loc["n_cases"], "top_patch_hit_rate": loc["top_patch_hit_rate"],
                     "zero_weight_patch_hit_rate": loc["bottom_patch_hit_rate"],
                     "lesion_attention_mass": loc["lesion_attention_mass"], "lesion_chance_level": loc["chance_level"]})
        print(rows[-1], flush=True)
    doc = {"benchmark": "train_minshift_shortcut",
           "what": "each run's best checkpoint on the test split: where its top and its zero-weight patch fall",
           "data": {"kind": args.data, "data_seed": args.data_seed, "cases": args.cases},
           "machine": machine_label(env, gpu=False), "environment": env, "results": rows}
    out = Path(args.out) if args.out else RESULTS / "train_minshift_shortcut.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return out


# ---- tables: docs/training.md and README.md, generated from the committed JSON ----------------------------------

def _f(x, d: int = 3) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def sweep_md(doc: dict[str, Any], title: str | None = None) -> list[str]:
    env = doc["environment"]
    s = doc["summary"]
    cfg = doc["train_config"]
    epochs = cfg["epochs"] if isinstance(cfg["epochs"], int) else "/".join(map(str, cfg["epochs"])) + " (per seed)"
    recipe = (f"{cfg['model']}, {epochs} epochs, lr {cfg['lr']:g}, batch {cfg['batch_size']}, init "
              f"{cfg.get('init', 'torch')}, warm-up {cfg.get('warmup_epochs', 0)}, clip {cfg.get('grad_clip', 0):g}, "
              f"sampler {cfg.get('sampler', 'random')}, augment {cfg['augment'] and cfg.get('augment_mode', 'crop_zoom') or 'off'}, "
              f"select {cfg.get('select', 'val_auc')}, amp {cfg.get('amp', 'off')}"
              + (", channels-last" if cfg.get("channels_last") else "")
              + f", instance term {cfg.get('instance_weight') or 'off'}")  # absent: the file's runs trained without it
    kind = doc["data"].get("kind", "hips")
    what = (f"{doc['data']['phantoms']} whole-pelvis studies" if kind == "pelvis"
            else f"{doc['data']['phantoms']} single-hip phantoms")
    data = f"{what}, one set per seed (as `sranet demo --seed S`)" if doc["data"]["vary_data"] else \
        f"{what} of data seed {doc['data']['data_seed']}"
    n = s["seeds"]
    rows = [f"**{title or doc['config']}** ({recipe}; {data}): test AUC without stage I >= 0.95 for "
            f"{s.get('seeds_test_auc_visible_ge_0.95', '?')} of {n} seeds; test AUC >= 0.95 for "
            f"{s['seeds_test_auc_ge_0.95']} of {n} and at its ceiling for {s.get('seeds_test_auc_at_ceiling', '?')} "
            f"of {n}; top patch in the lesion >= 0.8 for {s['seeds_hit_ge_0.8']} of {n}.", "",
            "| seed | test AUC (ceiling) | AUC w/o stage I | sensitivity | specificity | top patch in lesion "
            "| val AUC >= 0.9 at epoch (w/o stage I) | best epoch | wall s | train volumes/s | load avg start/end |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["results"]:
        hit = f"{_f(r['top_patch_hit_rate'], 2)} ({r['lesion_cases']} cases)"
        load = r["load_average_1min"]
        seed = f"{r['seed']}" + (f" (data {r['data_seed']})" if doc["data"]["vary_data"] else "")
        reached = (f"{r['epochs_to_val_auc_0.9'] or 'never'} "
                   f"({r.get('epochs_to_val_auc_visible_0.9') or 'never'})")
        rows.append(f"| {seed} | {_f(r['test_auc'])} ({_f(r['test_auc_ceiling'])}) | {_f(r.get('test_auc_visible'))} "
                    f"| {_f(r['test_sensitivity'], 2)} | {_f(r['test_specificity'], 2)} | {hit} | {reached} "
                    f"| {r['best_epoch']} | {r['wall_s']:.0f} | {_f(r['train_volumes_per_s'], 2)} "
                    f"| {load['start']:.1f} / {load['end']:.1f} |")
    rows += ["", f"*{env['date_utc']}, {doc['machine']}, torch {env['libraries'].get('torch', '?')}; "
                 f"{doc.get('timing_note', 'shared machine (wall times inflated by other jobs, see the load average)')}. "
                 f"Command: `{env['command']}`*"]
    return rows


def update_section(path: Path, name: str, lines: list[str]) -> None:
    """Replace the text between '<!-- NAME:begin ... -->' and '<!-- NAME:end -->' in ``path``."""
    import re

    text = path.read_text()
    begin = re.search(rf"<!-- {name}:begin[^>]*-->\n", text)
    end = text.find(f"<!-- {name}:end -->")
    if not begin or end < begin.end():
        raise SystemExit(f"{path}: no '<!-- {name}:begin ... -->' ... '<!-- {name}:end -->' markers")
    path.write_text(text[:begin.end()] + "\n".join(lines) + "\n" + text[end:])


# (file stem, title, also in the README): the defaults first, then the runs with the paper's loss alone
SWEEPS = (
    ("train_seeds_small_inst", "small, the demo's settings (instance term on)", True),
    ("train_seeds_small_demoinst", "small, the demo's settings, one phantom set per seed", True),
    ("train_seeds_paper_inst", "paper, the defaults (instance term on) with head_crop_zoom, bf16, channels-last", True),
    ("train_seeds_small", "small, the paper's loss (the demo's other settings)", False),
    ("train_seeds_small_demo", "small, the paper's loss, one phantom set per seed", False),
    ("train_seeds_small_recipe", "small, the recipe with the paper's loss", False),
    ("train_seeds_paper", "paper, the recipe with the paper's loss", False),
)


def tables() -> None:
    docs = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("train_seeds_*.json"))}
    for target, readme in ((ROOT / "docs" / "training.md", False), (ROOT / "README.md", True)):
        lines: list[str] = []
        for name, title, in_readme in SWEEPS:
            if readme and not in_readme:
                continue
            lines += sweep_md(docs[name], title) + [""] if name in docs else [f"(no {name}.json yet)", ""]
        update_section(target, "train-seeds", lines[:-1])
        print(f"updated {target}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=("small", "paper"), default="small")
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2, 3, 4])
    ap.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    ap.add_argument("--set", default="", help='JSON of TrainConfig overrides, e.g. \'{"batch_size": 4}\'')
    ap.add_argument("--data", choices=("pelvis", "hips"), default="pelvis",
                    help="the demo's whole-pelvis studies (default) or single-hip phantoms")
    ap.add_argument("--cases", type=int, default=None,
                    help="studies (pelvis, default the demo's 100) or phantoms (hips, default 160) to synthesise")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--vary-data", action="store_true", help="phantom seed = training seed (as sranet demo --seed)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "train_seeds"), help="data and run folders")
    ap.add_argument("--tag", default="", help="suffix of the result file and run folders")
    ap.add_argument("--out", default="", help="result JSON (default benchmarks/results/train_seeds_<config>.json)")
    ap.add_argument("--test-every-epoch", action=argparse.BooleanOptionalAction, default=None,
                    help="also score the test split after every epoch, for analysis (default: on for small)")
    ap.add_argument("--resume", action="store_true",
                    help="continue (or just evaluate) runs an earlier invocation left in --work instead of restarting")
    ap.add_argument("--tables", action="store_true", help="only rewrite the tables from the committed JSON")
    ap.add_argument("--merge", nargs="+", type=Path, default=None,
                    help="only join per-seed result files of one configuration into --out")
    ap.add_argument("--init-probe", action="store_true", help="only measure fresh models per init scheme")
    ap.add_argument("--shortcut-probe", nargs="+", type=Path, default=None, metavar="RUN",
                    help="only evaluate these run folders' best.pt: where the top and the zero-weight patch fall")
    args = ap.parse_args(argv)
    if args.cases is None:
        args.cases = 100 if args.data == "pelvis" else 160
    if args.tables:
        tables()
    elif args.merge:
        if not args.out:
            raise SystemExit("--merge needs --out")
        merge(args.merge, Path(args.out))
    elif args.init_probe:
        probe(args)
    elif args.shortcut_probe:
        shortcut_probe(args)
    else:
        sweep(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
