"""What the training diagnostics cost: training steps and validation passes with and without them, interleaved.

``sranet train`` records per-step gradient norms (``GradientMonitor.step``: one norm per block plus clipping), hooks
on every ReLU during the validation pass (``ReLUMonitor``), attention statistics per validated epoch, and redraws
RUN/plots/diagnostics.png every epoch. This script times, in one process and alternating A/B so that other load on
the machine hits both sides alike (the fastest repeat of each side is compared): a training step (forward, loss, backward, AdamW) with and without the gradient
monitor; a validation forward with and without the ReLU hooks; and the plot of a 50-epoch history.

    .venv/bin/python benchmarks/train_diagnostics_overhead.py                 # small and paper, random inputs
    .venv/bin/python benchmarks/train_diagnostics_overhead.py --models tiny --repeats 2 --out /tmp/o.json   # check

Writes benchmarks/results/train_diagnostics_overhead.json (machine, versions, command, per-model medians and ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def measure(model_name: str, batch: int, repeats: int) -> dict:
    import torch

    from sranet.config import ModelConfig
    from sranet.model.loss import sranet_loss
    from sranet.model.sranet import SRANet, initialize
    from sranet.train.diagnostics import GradientMonitor, ReLUMonitor, attention_stats

    torch.manual_seed(0)
    cfg = ModelConfig.preset(model_name)
    model = initialize(SRANet(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    S, N = cfg.input_size, cfg.num_patches
    x = torch.randn(batch, 1, S, S, S)
    y = (torch.arange(batch) % 2).float()
    f = (torch.rand(batch, N) > 0.5).float()
    monitor = GradientMonitor(model, clip=5.0)

    def step(with_monitor: bool) -> float:
        t0 = time.perf_counter()
        model.train()
        loss = sranet_loss(model(x), y, f, 0.9).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if with_monitor:
            monitor.step()
        opt.step()
        return time.perf_counter() - t0

    def validate(with_hooks: bool) -> float:
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad():
            if with_hooks:
                with ReLUMonitor(model) as relu:
                    out = model(x)
                relu.result()
                attention_stats(out.attention.numpy(), out.attention_logits.numpy(), f.numpy())
            else:
                model(x)
        return time.perf_counter() - t0

    step(True), step(False), validate(True), validate(False)  # warm-up
    times = {k: [] for k in ("step_plain", "step_monitored", "val_plain", "val_hooked")}
    for _ in range(repeats):
        times["step_plain"].append(step(False))
        times["step_monitored"].append(step(True))
        times["val_plain"].append(validate(False))
        times["val_hooked"].append(validate(True))
    best = {k: float(np.min(v)) for k, v in times.items()}  # the least disturbed repeat of each
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"model": model_name, "input_size": S, "batch": batch, "repeats": repeats, "min_s": best,
            "median_s": med, "samples_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
            "step_overhead_ratio": best["step_monitored"] / best["step_plain"],
            "val_overhead_ratio": best["val_hooked"] / best["val_plain"]}


def plot_seconds(epochs: int = 50) -> float:
    import tempfile

    from sranet.train.diagnostics import diagnostics_png

    rng = np.random.default_rng(0)
    history = [{"epoch": e, "lr": 1e-3, "alpha": 0.9, "train_loss_classification": float(rng.random()),
                "train_loss_structure": float(rng.random()), "val_auc": float(rng.random()), "attn_patches": 64,
                "attn_effective_patches": 40.0, "attn_top_share": 0.1, "dead_relu": {"conv1": 0.0, "embed": 0.1},
                "grad_norm": {"conv1": 0.1, "conv2": 0.2, "embed": 0.3, "head": 1.0}} for e in range(1, epochs + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        diagnostics_png(history, Path(tmp) / "d.png")
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["small", "paper"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--out", type=Path, default=RESULTS / "train_diagnostics_overhead.json")
    args = ap.parse_args(argv)

    from sranet.bench.env import collect_environment, machine_label

    env = collect_environment(argv=[Path(sys.executable).name, *sys.argv])
    load_start = os.getloadavg()[0]
    results = []
    for name in args.models:
        r = measure(name, args.batch, args.repeats)
        print(f"{name}: step {r['min_s']['step_plain'] * 1e3:.0f} -> {r['min_s']['step_monitored'] * 1e3:.0f} ms "
              f"(x{r['step_overhead_ratio']:.3f}); val {r['min_s']['val_plain'] * 1e3:.0f} -> "
              f"{r['min_s']['val_hooked'] * 1e3:.0f} ms (x{r['val_overhead_ratio']:.3f}) (fastest of each)", flush=True)
        results.append(r)
    plot_s = plot_seconds()
    print(f"diagnostics.png of 50 epochs: {plot_s * 1e3:.0f} ms")
    doc = {"benchmark": "train_diagnostics_overhead",
           "what": "A/B interleaved in one process: training step with/without GradientMonitor (norms + clip), "
                   "validation forward with/without ReLU hooks and attention statistics; random inputs",
           "machine": machine_label(env), "environment": env,
           "load_average_1min": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
           "shared_machine_note": "other jobs shared the cores; the A/B ratios are measured alternately within "
                                  "one run, the absolute times are not performance claims",
           "results": results, "plot_50_epochs_s": plot_s}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
