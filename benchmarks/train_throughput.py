"""Training throughput of SRANet on this CPU: volumes per second of one full training step, per precision and
memory layout.

A step is what ``sranet train`` does per batch with its default loss settings: forward, the SRANet loss
(classification, structure regulariser and instance term at TrainConfig's alpha and instance_weight), backward,
AdamW update. Inputs are random (B, 1, S, S, S) float32 volumes with random labels and patch targets
(throughput does not depend on the values); no data loading or augmentation is timed. Each batch size gets
``--warmup`` untimed steps, then ``--steps`` timed ones; every timed step enters the statistics (median, p10, p90,
mean, min, max of the step time; volumes/s = batch / step time, reported from the median and per quantile).

Variants (``--variants``), as ``sranet train`` runs them: ``fp32`` (the default), ``fp32-cl`` (``--channels-last``),
``bf16`` (``--amp bf16``) and ``bf16-cl`` (both). Each result carries its speed-up over ``fp32`` at the same batch,
timed in the same run.

    .venv/bin/python benchmarks/train_throughput.py                       # paper config, 128^3, batch 1 and 2
    .venv/bin/python benchmarks/train_throughput.py --model tiny --steps 3 --warmup 1 --out /tmp/t.json   # check

Writes benchmarks/results/train_throughput_cpu.json (``--device cuda``: train_throughput_gpu.json) with the machine,
versions, command, date, settings and results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


VARIANTS = {"fp32": ("off", False), "fp32-cl": ("off", True), "bf16": ("bf16", False), "bf16-cl": ("bf16", True)}


def time_steps(model_name: str, batch: int, steps: int, warmup: int, threads: int, seed: int = 0,
               variant: str = "fp32", device: str = "cpu") -> dict:
    import torch

    from sranet.config import ModelConfig
    from sranet.model.loss import sranet_loss
    from sranet.model.sranet import SRANet, count_parameters
    from sranet.train.config import TrainConfig

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cfg = ModelConfig.preset(model_name)
    amp, channels_last = VARIANTS[variant]
    dev = torch.device(device)
    model = SRANet(cfg).train()
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=layout)
    train_cfg = TrainConfig()
    opt = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    S, N = cfg.input_size, cfg.num_patches
    x = torch.randn(batch, 1, S, S, S).to(dev).contiguous(memory_format=layout)
    y = (torch.arange(batch) % 2).float().to(dev)
    f = (torch.rand(batch, N) > 0.5).float().to(dev)
    times_ms = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            out = model(x)
        loss = sranet_loss(out, y, f, train_cfg.alpha, train_cfg.instance_weight).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) * 1000.0
        if not np.isfinite(loss.item()):
            raise RuntimeError("loss became non-finite during the benchmark")
        if i >= warmup:
            times_ms.append(dt)
    t = np.asarray(times_ms)
    p10, p50, p90 = np.percentile(t, [10, 50, 90])
    return {
        "variant": variant,
        "amp": amp,
        "channels_last": channels_last,
        "model": model_name,
        "input_size": S,
        "parameters": count_parameters(model),
        "batch": batch,
        "steps": steps,
        "warmup": warmup,
        "torch_threads": torch.get_num_threads(),
        "step_ms": {"median": float(p50), "p10": float(p10), "p90": float(p90), "mean": float(t.mean()),
                    "min": float(t.min()), "max": float(t.max()), "samples": [round(v, 3) for v in times_ms]},
        # volumes/s from the step-time quantiles: the p10 step time gives the p90 throughput and vice versa
        "volumes_per_s": {"median": batch * 1000.0 / p50, "p10": batch * 1000.0 / p90, "p90": batch * 1000.0 / p10},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="paper", help="preset: paper (128^3), small, tiny")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2], help="batch sizes to time")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per batch size")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                    help="precision and memory layout; the first is the reference of the speed-ups")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    ap.add_argument("--out", type=Path, default=None, help="default results/train_throughput_<cpu|gpu>.json")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or min(args.batch) < 1:
        ap.error("--steps must be >= 1, --warmup >= 0 and every --batch >= 1")

    from sranet.bench.env import collect_environment, machine_label

    env = collect_environment(threads=args.threads or None, argv=[Path(sys.executable).name, *sys.argv])
    results = []
    for batch in args.batch:
        reference = None
        for variant in args.variants:
            r = time_steps(args.model, batch, args.steps, args.warmup, args.threads, variant=variant,
                           device=args.device)
            reference = reference or r["step_ms"]["median"]
            r["speedup_vs_" + args.variants[0]] = reference / r["step_ms"]["median"]
            print(f"{args.model} {r['input_size']}^3 batch {batch} {variant}: median step "
                  f"{r['step_ms']['median']:.0f} ms (p10 {r['step_ms']['p10']:.0f}, p90 {r['step_ms']['p90']:.0f}) -> "
                  f"{r['volumes_per_s']['median']:.2f} volumes/s, {r['speedup_vs_' + args.variants[0]]:.2f}x", flush=True)
            results.append(r)
    doc = {
        "benchmark": "train_throughput",
        "what": "forward + SRANet loss + backward + AdamW step on random inputs; no data loading",
        "device": args.device,
        "machine": machine_label(env, gpu=args.device != "cpu"),
        "environment": env,
        "settings": {"model": args.model, "batches": args.batch, "steps": args.steps, "warmup": args.warmup,
                     "variants": args.variants},
        "results": results,
    }
    if args.out is None:
        args.out = RESULTS / f"train_throughput_{'cpu' if args.device == 'cpu' else 'gpu'}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
