"""What the training diagnostics cost, next to what they are added to.

``sranet train`` records per-step gradient norms (``GradientMonitor.step``: one norm per block plus clipping), hooks
on every ReLU during the validation pass (``ReLUMonitor``), attention statistics per validated epoch, and redraws
RUN/plots/diagnostics.png every epoch. This script times, in one process and alternating so that other load on the
machine hits all sides alike (the fastest repeat of each is compared): a training step (forward, loss, backward,
AdamW), the gradient monitor on that step's gradients, a validation pass of a few batches with and without the
ReLU hooks and attention statistics, and the plot of a 50-epoch history.

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


def measure(model_name: str, batch: int, repeats: int, val_batches: int) -> dict:
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

    def step() -> float:
        t0 = time.perf_counter()
        model.train()
        loss = sranet_loss(model(x), y, f, 0.9).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    def monitor_step() -> float:  # on the gradients the last step left
        t0 = time.perf_counter()
        monitor.step()
        return time.perf_counter() - t0

    def validate(with_hooks: bool) -> float:  # val_batches batches, one monitor over the pass as in the loop
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad():
            relu = ReLUMonitor(model) if with_hooks else None
            if relu:
                relu.__enter__()
            outs = [model(x) for _ in range(val_batches)]
            if relu:
                relu.__exit__(None, None, None)
                relu.result()
                attention_stats(torch.cat([o.attention for o in outs]).numpy(),
                                torch.cat([o.attention_logits for o in outs]).numpy(), f.repeat(val_batches, 1).numpy())
        return time.perf_counter() - t0

    step(), monitor_step(), validate(True), validate(False)  # warm-up
    times = {k: [] for k in ("step", "monitor_step", "val_plain", "val_hooked")}
    for _ in range(repeats):  # A/B alternate, so that other load hits both sides alike
        times["step"].append(step())
        times["monitor_step"].append(monitor_step())
        times["val_plain"].append(validate(False))
        times["val_hooked"].append(validate(True))
    best = {k: float(np.min(v)) for k, v in times.items()}  # the least disturbed repeat of each
    return {"model": model_name, "input_size": S, "batch": batch, "val_batches": val_batches, "repeats": repeats,
            "min_s": best, "samples_s": {k: [round(t, 5) for t in v] for k, v in times.items()},
            "monitor_share_of_step": best["monitor_step"] / best["step"],
            "val_hooks_ratio": best["val_hooked"] / best["val_plain"]}


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
    ap.add_argument("--val-batches", type=int, default=4, help="batches per timed validation pass")
    ap.add_argument("--out", type=Path, default=RESULTS / "train_diagnostics_overhead.json")
    args = ap.parse_args(argv)

    from sranet.bench.env import collect_environment, machine_label

    env = collect_environment(argv=[Path(sys.executable).name, *sys.argv])
    load_start = os.getloadavg()[0]
    results = []
    for name in args.models:
        r = measure(name, args.batch, args.repeats, args.val_batches)
        m = r["min_s"]
        print(f"{name}: step {m['step'] * 1e3:.1f} ms, gradient monitor {m['monitor_step'] * 1e3:.2f} ms "
              f"({r['monitor_share_of_step']:.2%} of a step); validation pass {m['val_plain'] * 1e3:.0f} -> "
              f"{m['val_hooked'] * 1e3:.0f} ms with hooks (x{r['val_hooks_ratio']:.3f}) (fastest of each)", flush=True)
        results.append(r)
    plot_s = plot_seconds()
    print(f"diagnostics.png of 50 epochs: {plot_s * 1e3:.0f} ms")
    doc = {"benchmark": "train_diagnostics_overhead",
           "what": "in one process, alternating: a training step, GradientMonitor.step (norms + clip) on its "
                   "gradients, a validation pass with/without ReLU hooks and attention statistics; random inputs",
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
