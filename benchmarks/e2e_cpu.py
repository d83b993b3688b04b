"""End-to-end latency on this CPU for one realistic case: a 512 x 512 x N DICOM series -> probability + attention.

What it does, in one command:
  1. a paper-configuration SRANet (128^3, seeded random weights: latency does not depend on the weights) saved as a
     checkpoint and exported with `sranet export`'s own gated exporter, twice: model.onnx (direct Conv3d, the
     default) and model.spectral.onnx (`--conv-impl spectral`);
  2. a 512 x 512 x N CT series written to a temp folder from a real slice (benchmarks/preprocess_stages.py);
  3. `sranet benchmark model.onnx model.spectral.onnx model.pt --input SERIES --roi <96 mm box>` (interleaved,
     ratios against the direct ONNX graph) with the compute floor from results/peak_matmul.json.

    .venv/bin/python benchmarks/e2e_cpu.py                 # a few minutes on a quiet 2-core machine
    .venv/bin/python benchmarks/e2e_cpu.py --quick         # tiny model, 24 slices: checks the script only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).parent))  # sibling script: the series synthesiser


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--duration-s", type=float, default=20.0)
    ap.add_argument("--min-iters", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "benchmark_cpu_e2e.json")
    args = ap.parse_args(argv)

    import torch
    from preprocess_stages import synthesise_series
    from typer.testing import CliRunner

    from sranet.cli.main import app
    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.export.onnx import export_onnx
    from sranet.model import SRANet
    from sranet.model.checkpoint import save_checkpoint

    preset = "tiny" if args.quick else "paper"
    slices = 24 if args.quick else args.slices
    cfg = ModelConfig.preset(preset)
    peak = json.loads((RESULTS / "peak_matmul.json").read_text()).get("peak_gflops") if (RESULTS / "peak_matmul.json").exists() else None
    with tempfile.TemporaryDirectory(prefix="sranet-e2e-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        save_checkpoint(tmp / "model.pt", model=SRANet(cfg).eval(), preprocess_config=PreprocessConfig.for_model(cfg),
                        threshold=0.5, epoch=0, metrics={}, train_config={"note": "random init, for latency only"})
        export_onnx(tmp / "model.pt", tmp / "model.onnx")
        export_onnx(tmp / "model.pt", tmp / "model.spectral.onnx", conv_impl="spectral",
                    spectral_layers=(1, 2) if args.quick else None)  # tiny: no layer gets cheaper, so force both
        series = synthesise_series(tmp / "series", slices)
        px, size = 0.78, 512
        half_d, half_hw = min(slices // 2, 48), int(48 / px)  # a 96 mm box around the series centre
        roi = (f"{slices // 2 - half_d}:{slices // 2 + half_d},{size // 2 - half_hw}:{size // 2 + half_hw},"
               f"{size // 2 - half_hw}:{size // 2 + half_hw}")
        cmd = ["benchmark", str(tmp / "model.onnx"), str(tmp / "model.spectral.onnx"), str(tmp / "model.pt"), "--input", str(series), "--roi", roi,
               "--batch", "1", "--warmup-s", "2", "--min-iters", str(2 if args.quick else args.min_iters),
               "--duration-s", str(1.0 if args.quick else args.duration_s), "--json", str(args.out)]
        if peak:
            cmd += ["--peak-gflops", str(peak)]
        result = CliRunner().invoke(app, cmd)
        print(result.output, file=sys.stderr)
        if result.exit_code != 0:
            raise SystemExit(result.exit_code)
    doc = json.loads(args.out.read_text())
    doc["note"] = (f"benchmarks/e2e_cpu.py: {preset} configuration, seeded random weights; series {slices} x 512 x 512, "
                   f"0.78 mm pixels, 1 mm slices, synthesised from a real CT slice; ROI {roi}")
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
