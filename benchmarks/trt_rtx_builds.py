#!/usr/bin/env python
"""Every ONNX variant `sranet export` writes, built by TensorRT-RTX for each target it offers, on this CPU (no GPU):
which builds succeed, plan sizes, build times, what the builder compiled (layer kinds, convolution data types), and
the layer listing of the paper-configuration fp16 network as TensorRT-RTX sees it.

    .venv/bin/python benchmarks/trt_rtx_builds.py      # about a minute on the 2-core machine

Writes benchmarks/results/trt_rtx_builds.json (the matrix) and benchmarks/results/trt_rtx_paper_fp16_layers.json
(the parsed network and the compiled layers of the paper fp16 build for 8.9). Build times are wall-clock seconds of
``build_serialized_network`` on a shared machine: they say "well under a second", not more. The models have random
weights (seed 0): plans, layers and types do not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "trt_rtx_builds.json")
    ap.add_argument("--layers-out", type=Path, default=RESULTS / "trt_rtx_paper_fp16_layers.json")
    args = ap.parse_args(argv)

    import tensorrt_rtx

    from sranet.bench.env import collect_environment
    from sranet.bench.trt_rtx import VARIANTS, build_variant, write_variants
    from sranet.errors import ArtifactError
    from sranet.export.tensorrt import offered_targets
    from sranet.runtime.files import atomic_write

    offered = offered_targets(tensorrt_rtx)
    rows, layers_doc = [], None
    with tempfile.TemporaryDirectory(prefix="sranet_trt_rtx_") as tmp:
        paths = write_variants(VARIANTS, Path(tmp))
        for name, path in paths.items():
            precision, spectral, preset = VARIANTS[name]
            for target in [*offered, "default"]:
                row = {"variant": name, "precision": precision, "preset": preset,
                       "conv_impl": "spectral" if spectral else "direct", "onnx_bytes": path.stat().st_size,
                       "target": target}
                try:
                    compiled, summary = build_variant(path, precision, None if target == "default" else [target])
                except ArtifactError as exc:
                    row.update(built=False, error=str(exc).split(": ", 1)[-1][:300])
                else:
                    row.update(built=True, targets=summary["targets"], plan_bytes=summary["plan_bytes"],
                               build_s=summary["build_s"], engine_layers=summary["engine_layers"],
                               engine_layer_kinds=summary["engine_layer_kinds"],
                               convolutions=[(c["inputs"][0] if c["inputs"] else None, c["weights"])
                                             for c in summary["convolutions"]])
                    if name == "paper_fp16" and target == "8.9":
                        layers_doc = {"variant": name, "target": target, "io": summary["io"],
                                      "network_layer_types": summary["network_layer_types"],
                                      "network_layers": compiled.layers, "engine_layers": compiled.engine_layers}
                rows.append(row)
                status = f"{row['plan_bytes'] / 1e6:.2f} MB, {row['build_s']:.2f} s" if row["built"] else "FAILED"
                print(f"[trt_rtx_builds] {name:12s} {target:8s} {status}", flush=True)
    env = collect_environment(argv=["benchmarks/trt_rtx_builds.py", *(argv or sys.argv[1:])])
    result = {
        "what": "TensorRT-RTX ahead-of-time builds of every sranet export variant, per target, on a CPU-only machine",
        "tensorrt_rtx": tensorrt_rtx.__version__, "targets_offered": offered, "environment": env,
        "note": "build_s: wall-clock of build_serialized_network on a shared 2-core machine (noisy); the plans were "
                "built, not run (no GPU). 'default' = the targets sranet picks when --compute-capability is left out.",
        "builds": rows,
        "summary": {"built": sum(r["built"] for r in rows), "failed": sum(not r["built"] for r in rows),
                    "failed_builds": sorted({f"{r['variant']}@{r['target']}" for r in rows if not r["built"]})},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(result, indent=1) + "\n")
    if layers_doc is not None:
        layers_doc.update(tensorrt_rtx=tensorrt_rtx.__version__, command="benchmarks/trt_rtx_builds.py",
                          note="network_layers: the network as TensorRT-RTX's ONNX parser built it; engine_layers: "
                               "what the builder compiled for 8.9 (its DETAILED layer log): kind, data types of "
                               "inputs, constants (weights) and outputs, and the ONNX nodes each fused.")
        atomic_write(args.layers_out, json.dumps(layers_doc, indent=1) + "\n")
    print(f"[trt_rtx_builds] wrote {args.out} ({result['summary']['built']} built, {result['summary']['failed']} "
          f"failed) and {args.layers_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
