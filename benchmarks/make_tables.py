"""Generate docs/benchmarks.md (the README's benchmark tables) from benchmarks/results/*.json.

Every table carries the date, machine and command of the run that produced it. Known result kinds:
sranet-peak-matmul/1, sranet-cpu-backends/1, sranet-preprocess-stages/1, sranet-benchmark/1 (``sranet benchmark
--json``), and the GPU check (benchmarks/gpu_check.py, recognised by its sections), rendered generically: every
entry holding p50_ms becomes a row, and a section that failed or was skipped is listed with its reason.

    .venv/bin/python benchmarks/make_tables.py           # writes docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def f(x, d: int = 1) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def provenance(env: dict, *, cpu_only: bool = False) -> str:
    from sranet.bench.env import machine_label

    if isinstance(env.get("cpu"), dict):
        machine = machine_label(env, gpu=not cpu_only)
        if cpu_only and env.get("gpus"):
            machine += f" (host of an {env['gpus'][0]['name']}; CPU only)"
    else:  # gpu_check's environment
        machine = env.get("gpu") or env.get("device") or f"{env.get('cpu') or 'CPU'}, {env.get('cpu_count')} cores"
        if env.get("dry_run"):
            machine += " (dry run: CPU, tiny sizes; not a GPU result)"
    libs = env.get("libraries") or {k: env[k] for k in ("torch", "onnxruntime", "numpy") if k in env}
    lib = ", ".join(f"{k} {v}" for k, v in libs.items() if k in ("torch", "onnxruntime", "numpy", "tensorrt"))
    threads = {k: v for k, v in (env.get("threads") or {}).items() if v is not None}
    return (f"*{env.get('date_utc', '?')}, {machine}; {lib}" + (f"; threads {threads}" if threads else "")
            + f". Command: `{env.get('command', '?')}`*")


def peak_md(doc: dict) -> list[str]:
    rows = ["| library | n | median ms | GFLOP/s (median) |", "|---|---:|---:|---:|"]
    rows += [f"| {r['library']} | {r['n']} | {f(r['median_s'] * 1e3, 2)} | {f(r['gflops_median'])} |" for r in doc["rows"]]
    return [f"Peak fp32 matrix multiply: **{f(doc['peak_gflops'])} GFLOP/s** ({doc['peak_from']['library']}, "
            f"n={doc['peak_from']['n']}; {doc['method']}).", "", *rows]


def cpu_md(doc: dict) -> list[str]:
    fl = doc["flops_per_volume"]["matmul_flops"]
    peak = doc["peak"]["peak_gflops"]
    out = [f"Model: {doc['model']['preset']} configuration, {f(fl / 1e9, 2)} GFLOPs per volume "
           f"({doc['flops_convention']}); weights: {doc['model']['weights']}. Compute floor at batch 1: "
           + (f"{f(fl / peak / 1e6)} ms (peak {f(peak)} GFLOP/s)." if peak else "not computed (no peak_matmul.json)."),
           "", "| config | batch | p50 ms | p90 ms | p99 ms | vol/s | speed-up vs torch eager (paired) | p50 / floor |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for block in doc["blocks"]:
        for r in block["rows"]:
            h = r["host"]
            out.append(f"| {r['config']} | {r['batch']} | {f(h['p50_ms'])} | {f(h['p90_ms'])} | {f(h['p99_ms'])} | "
                       f"{f(h['throughput_vol_s'], 2)} | {f(r['speedup_vs_first_paired'], 2)}x | "
                       f"{f(r.get('p50_over_floor'), 2)} |")
    for name, why in doc.get("failed", {}).items():
        out.append(f"| {name} | - | did not run: {why} | | | | | |")
    out += ["", "Variants: " + "; ".join(f"**{k}**: {v}" for k, v in doc["variants"].items() if k not in doc.get("failed", {})) + ".",
            "Parity against torch eager (max |difference|): " + "; ".join(
                f"{k}: prob {f(v.get('max_abs_prob'), 8) if 'max_abs_prob' in v else v.get('error')}, attention "
                f"{f(v.get('max_abs_attention'), 8) if 'max_abs_attention' in v else '-'}"
                for k, v in doc["parity_vs_torch"].items()) + "."]
    for graph, t in doc.get("target", {}).items():
        out.append(f"Target check, {graph} batch 1: p50 {f(t['p50_ms'])} ms = {f(t['p50_over_floor'], 2)}x the floor "
                   f"(target <= 1.3x: {'met' if t['meets_floor_1_3x'] else 'NOT met'}); {f(t['speedup_vs_torch_eager'], 2)}x "
                   f"faster than torch eager in the same run (target >= 2x: {'met' if t['meets_2x_vs_torch'] else 'NOT met'}).")
    if doc.get("sweep_batch1"):
        out += ["", "ONNX Runtime threads x graph-optimisation level, batch 1 (interleaved with torch eager):", "",
                "| config | p50 ms | p90 ms | vs torch eager (paired) | p50 / floor |", "|---|---:|---:|---:|---:|"]
        for r in doc["sweep_batch1"]:
            out.append(f"| {r['config']} | {f(r['host']['p50_ms'])} | {f(r['host']['p90_ms'])} | "
                       f"{f(r['speedup_vs_first_paired'], 2)}x | {f(r.get('p50_over_floor'), 2)} |")
        cpu = doc["environment"].get("cpu", {})
        if any(" t=0 " in r["config"] for r in doc["sweep_batch1"]) and \
                (cpu.get("usable_cores") or 0) < (cpu.get("logical_cores") or 0):
            out += ["", f"t=0 is ONNX Runtime's default thread count. It counts the machine's {cpu['logical_cores']} "
                        f"cores and does not honour this process's {cpu['usable_cores']}-core affinity mask, so the "
                        "t=0 rows ran on cores outside the mask: they are not results for "
                        f"{cpu['usable_cores']} cores, and their p50/floor (floor from a {cpu['usable_cores']}-core "
                        "peak) is meaningless."]
    return out


def stages_md(doc: dict) -> list[str]:
    s = doc["series"]
    out = [f"Series: {s['shape'][0]} slices of {s['shape'][1]}x{s['shape'][2]}, {s['pixel_mm']} mm pixels, "
           f"{s['slice_mm']} mm slices, compression {s['compress']}, {s['disk_mib']} MiB; ROI {s['roi']}; output "
           f"{doc['preprocess_config']['output_size']}^3. {doc['note']}.", "",
           "| stage | p50 ms | p90 ms | min ms | max ms | first repeat ms |", "|---|---:|---:|---:|---:|---:|"]
    for name, st in doc["stages"].items():
        out.append(f"| {name} | {f(st['p50_ms'])} | {f(st['p90_ms'])} | {f(st['min_ms'])} | {f(st['max_ms'])} | "
                   f"{f(st['first_repeat_ms'])} |")
    return out


def generic_md(doc: dict) -> list[str]:
    rows, notes = [], []

    def walk(x, path: str) -> None:
        if isinstance(x, dict):
            if "p50_ms" in x:
                rows.append(f"| {path} | {f(x.get('p50_ms'), 2)} | {f(x.get('p90_ms'), 2)} | {f(x.get('p99_ms'), 2)} | "
                            f"{x.get('n', '-')} |")
                return
            if "error" in x or "skipped" in x:
                notes.append(f"- `{path}`: {x.get('error') or x.get('skipped')}")
                return
            for k, v in x.items():
                walk(v, f"{path}/{k}" if path else k)

    for key, value in doc.items():
        if key != "environment":
            walk(value, key)
    out = ["| measurement | p50 ms | p90 ms | p99 ms | n |", "|---|---:|---:|---:|---:|", *rows]
    if notes:
        out += ["", "Not measured:", *notes]
    return out


def render(results_dir: Path) -> str:
    from sranet.bench.report import to_markdown

    parts = ["# Benchmarks", "", "Generated by `benchmarks/make_tables.py` from `benchmarks/results/*.json`; do not "
             "edit by hand. Percentiles are numpy 'linear' over every sample (no outlier removal); configurations "
             "compared in one table were run interleaved round-robin in one process.", ""]
    order = {"sranet-peak-matmul/1": 0, "sranet-cpu-backends/1": 1, "sranet-preprocess-stages/1": 2,
             "sranet-benchmark/1": 3}
    docs = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            print(f"skipping {path}: not JSON ({exc})", file=sys.stderr)
            continue
        docs.append((order.get(doc.get("schema"), 4), path, doc))
    titles = {"sranet-peak-matmul/1": "Peak matrix-multiply rate (compute floor denominator)",
              "sranet-cpu-backends/1": "PyTorch eager vs ONNX Runtime on CPU",
              "sranet-preprocess-stages/1": "Preprocessing stages on a 512x512xN series",
              "sranet-benchmark/1": "`sranet benchmark`"}
    for _, path, doc in sorted(docs, key=lambda t: (t[0], t[1].name)):
        schema = doc.get("schema")
        title = titles.get(schema, "GPU check" if "torch_latency" in doc or "tensorrt" in doc else path.stem)
        cpu_only = schema in ("sranet-peak-matmul/1", "sranet-cpu-backends/1", "sranet-preprocess-stages/1")
        parts += [f"## {title} ({path.name})", ""]
        if schema != "sranet-benchmark/1":  # that one states its own date, machine and command
            parts += [provenance(doc.get("environment", {}), cpu_only=cpu_only), ""]
        body = {"sranet-peak-matmul/1": peak_md, "sranet-cpu-backends/1": cpu_md,
                "sranet-preprocess-stages/1": stages_md}.get(schema)
        if body is not None:
            parts += body(doc)
        elif schema == "sranet-benchmark/1":
            parts.append(to_markdown(doc).rstrip())
        else:
            parts += generic_md(doc)
        parts.append("")
    if not docs:
        parts.append("No results yet: run the scripts in benchmarks/ (see each script's docstring).")
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args.results))
    print(f"wrote {args.out}", file=sys.stderr)
    return args.out


if __name__ == "__main__":
    main()
