"""Generate docs/benchmarks.md and the README's benchmark summary from benchmarks/results/*.json.

Every table carries the date, machine and command of the run that produced it. Known result kinds:
sranet-peak-matmul/2, sranet-cpu-graphs/1, sranet-cpu-backends/1, sranet-preprocess-stages/1, sranet-benchmark/1
(``sranet benchmark --json``), and the GPU check (benchmarks/gpu_check.py, recognised by its sections), rendered
generically: every entry holding p50_ms becomes a row, and a section that failed or was skipped is listed with its
reason.

Every CPU floor ratio is computed here from the peak in results/peak_matmul.json (the fastest GEMM any shipped
runtime reaches on this machine, fp32 and bf16), never taken from the ratio a result file stored when it was run:
a result measured against an older, lower peak is shown against the current one.

    .venv/bin/python benchmarks/make_tables.py           # writes docs/benchmarks.md and README.md's summary

The README summary replaces only the text between ``<!-- benchmarks:begin ... -->`` and ``<!-- benchmarks:end -->``;
a row whose result file is missing is left out with a note, never filled in by hand.
"""

from __future__ import annotations

import argparse
import json
import re
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
    else:  # the environment of gpu_check results written before it used sranet.bench.env
        machine = env.get("gpu") or env.get("device") or f"{env.get('cpu') or 'CPU'}, {env.get('cpu_count')} cores"
    if env.get("dry_run"):
        machine += " (dry run: CPU, tiny sizes; not a GPU result)"
    libs = env.get("libraries") or {k: env[k] for k in ("torch", "onnxruntime", "numpy") if k in env}
    lib = ", ".join(f"{k} {v}" for k, v in libs.items() if k in ("torch", "onnxruntime", "openvino", "numpy", "tensorrt"))
    threads = {k: v for k, v in (env.get("threads") or {}).items() if v is not None}
    return (f"*{env.get('date_utc', '?')}, {machine}; {lib}" + (f"; threads {threads}" if threads else "")
            + f". Command: `{env.get('command', '?')}`*")


def peak_md(doc: dict) -> list[str]:
    bf16 = (f" bf16: **{f(doc['peak_bf16_gflops'])} GFLOP/s** ({doc['peak_bf16_from']['library']}, "
            f"{doc['peak_bf16_from']['shape']})." if doc.get("peak_bf16_gflops") else
            " bf16: not measured (this CPU has neither AVX512_BF16 nor AMX, or no runtime offers it).")
    out = [f"Peak matrix multiply, fp32: **{f(doc['peak_gflops'])} GFLOP/s** ({doc['peak_from']['library']}, "
           f"{doc['peak_from']['shape']});{bf16} Threads: {doc.get('threads')}. Method: {doc['method']}."]
    if doc.get("note"):
        out += ["", f"Note: {doc['note']}"]
    for square, title in ((True, "Square products (these give the peak)"),
                          (False, "The model's own products (paper configuration; not counted in the peak)")):
        rows = [r for r in doc["rows"] if r["square"] is square]
        if not rows:
            continue
        out += ["", f"{title}:", "", "| product | m x k x n | library | precision | median ms | GFLOP/s (median) |",
                "|---|---|---|---|---:|---:|"]
        for r in rows:
            timing = (f"{f(r['median_s'] * 1e3, 2)} | {f(r['gflops_median'])}" if "median_s" in r
                      else f"failed: {r.get('error')} | -")
            out.append(f"| {r['shape']} | {r['m']} x {r['k']} x {r['n']} | {r['library']} | {r['precision']} | "
                       f"{timing} |")
    for what, why in (doc.get("not_measured") or {}).items():
        out.append(f"\n{what}: not measured ({why}).")
    return out


def current_peaks(results_dir: Path) -> dict[str, float | None]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s or None} from results/peak_matmul.json (both None without it)."""
    doc = _load(results_dir, "peak_matmul.json") or {}
    return {"fp32": doc.get("peak_gflops"), "bf16": doc.get("peak_bf16_gflops")}


def rebase_benchmark(doc: dict, peak: float | None) -> dict:
    """A `sranet benchmark` document whose CPU floor fields are recomputed against ``peak`` (GPU runs untouched)."""
    if not peak or doc.get("environment", {}).get("gpus") or not doc.get("compute", {}).get("peak_gflops"):
        return doc
    doc = json.loads(json.dumps(doc))
    doc["compute"]["peak_gflops"] = peak
    for block in doc.get("model_only", []):
        for r in block["results"]:
            a = doc["artifacts"][r["artifact"]]
            r["floor_ms"] = block["batch"] * a["flops_per_volume"]["matmul_flops"] / (peak * 1e9) * 1e3
            r["p50_over_floor"] = r["host"]["p50_ms"] / r["floor_ms"]
            if "graph_floor_ms" in r:
                r["graph_floor_ms"] = block["batch"] * a["graph_matmul_flops"] / (peak * 1e9) * 1e3
                r["p50_over_graph_floor"] = r["host"]["p50_ms"] / r["graph_floor_ms"]
    return doc


def cpu_md(doc: dict, peak: float | None = None) -> list[str]:
    """``peak``: the current fp32 peak; every floor ratio is recomputed against it."""
    fl = doc["flops_per_volume"]["matmul_flops"]
    sp = doc.get("spectral")
    out = [f"Model: {doc['model']['preset']} configuration, {f(fl / 1e9, 2)} GFLOPs per volume "
           f"({doc['flops_convention']}); weights: {doc['model']['weights']}. Compute floor at batch 1: "
           + (f"{f(fl / peak / 1e6)} ms (fp32 peak {f(peak)} GFLOP/s)." if peak else "not computed (no peak_matmul.json)."),
           "", "| config | batch | p50 ms | p90 ms | p99 ms | vol/s | speed-up vs torch eager (paired) | p50 / floor | "
           "p50 / own graph's floor |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if sp and peak:
        out.insert(1, f"The spectral graph (Conv3d layers {sp['layers']} as DFT matrix products) does "
                      f"{f(sp['graph_matmul_flops'] / 1e9, 2)} GFLOPs per volume; its own floor at batch 1 is "
                      f"{f(sp['graph_matmul_flops'] / peak / 1e6)} ms. The floor column uses the model's direct count "
                      "for every row, as the target does.")
    def ratios(r, batch):
        if not peak:
            return None, None
        own = sp["graph_matmul_flops"] if sp and r["config"].startswith("ort_fp32_spectral") else None
        return (r["host"]["p50_ms"] / (batch * fl / peak / 1e6),
                r["host"]["p50_ms"] / (batch * own / peak / 1e6) if own else None)

    for block in doc["blocks"]:
        for r in block["rows"]:
            h = r["host"]
            floor, own = ratios(r, r["batch"])
            out.append(f"| {r['config']} | {r['batch']} | {f(h['p50_ms'])} | {f(h['p90_ms'])} | {f(h['p99_ms'])} | "
                       f"{f(h['throughput_vol_s'], 2)} | {f(r['speedup_vs_first_paired'], 2)}x | "
                       f"{f(floor, 2)} | {f(own, 2)} |")
    for name, why in doc.get("failed", {}).items():
        out.append(f"| {name} | - | did not run: {why} | | | | | | |")
    out += ["", "Variants: " + "; ".join(f"**{k}**: {v}" for k, v in doc["variants"].items() if k not in doc.get("failed", {})) + ".",
            "Parity against torch eager (max |difference|): " + "; ".join(
                f"{k}: prob {f(v.get('max_abs_prob'), 8) if 'max_abs_prob' in v else v.get('error')}, attention "
                f"{f(v.get('max_abs_attention'), 8) if 'max_abs_attention' in v else '-'}"
                for k, v in doc["parity_vs_torch"].items()) + "."]
    stored = doc["peak"]["peak_gflops"]
    if peak and stored and abs(stored - peak) > 1e-6 * peak:
        out.append(f"Floor ratios use the current peak ({f(peak)} GFLOP/s, peak_matmul.json), not the "
                   f"{f(stored)} GFLOP/s this run was compared with when it was made.")
    if doc.get("sweep_batch1"):
        out += ["", "ONNX Runtime threads x graph-optimisation level, batch 1 (interleaved with torch eager):", "",
                "| config | p50 ms | p90 ms | vs torch eager (paired) | p50 / floor | p50 / own graph's floor |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in doc["sweep_batch1"]:
            floor, own = ratios(r, 1)
            out.append(f"| {r['config']} | {f(r['host']['p50_ms'])} | {f(r['host']['p90_ms'])} | "
                       f"{f(r['speedup_vs_first_paired'], 2)}x | {f(floor, 2)} | {f(own, 2)} |")
        cpu = doc["environment"].get("cpu", {})
        if any(" t=0 " in r["config"] for r in doc["sweep_batch1"]) and \
                (cpu.get("usable_cores") or 0) < (cpu.get("logical_cores") or 0):
            out += ["", f"t=0 is ONNX Runtime's default thread count. It counts the machine's {cpu['logical_cores']} "
                        f"cores and does not honour this process's {cpu['usable_cores']}-core affinity mask, so the "
                        "t=0 rows ran on cores outside the mask: they are not results for "
                        f"{cpu['usable_cores']} cores, and their p50/floor (floor from a {cpu['usable_cores']}-core "
                        "peak) is meaningless."]
    return out


def graphs_md(doc: dict, peaks: dict[str, float | None]) -> list[str]:
    """sranet-cpu-graphs/1: every graph on every CPU runtime, interleaved; floors from the current peaks."""
    fl, st = doc["matmul_flops_per_volume"], doc["settings"]
    B = st["batch"]
    floor = B * fl / peaks["fp32"] / 1e6 if peaks.get("fp32") else None
    floor16 = B * fl / peaks["bf16"] / 1e6 if peaks.get("bf16") else None
    out = [f"Model only: {doc['model']['preset']} configuration, {f(fl / 1e9, 2)} GFLOPs per volume (direct "
           f"convolution count), batch {B}, {st['threads']} threads for every runtime, all variants interleaved "
           f"round-robin in one process; weights: {doc['model']['weights']}. Direct floor: "
           + (f"{f(floor)} ms at the fp32 peak ({f(peaks['fp32'])} GFLOP/s)" if floor else "not computed")
           + (f", {f(floor16)} ms at the bf16 peak ({f(peaks['bf16'])} GFLOP/s)." if floor16 else ".")]
    if doc.get("note"):
        out += ["", f"Note: {doc['note']}"]
    run = doc.get("in_run_gemm") or {}
    if run.get("direct_floor_fp32_ms"):
        rates = ", ".join(f"{k.removeprefix('gemm ')} {f(v['gflops_p50'])}" for k, v in run["calls"].items())
        out += ["", f"In this run, interleaved with the variants, {next(iter(run['calls'].values()))['n']}^3 products ran "
                    f"at {rates} GFLOP/s: a direct floor of {f(run['direct_floor_fp32_ms'])} ms under the same "
                    "conditions (last column)."]
    out += ["", "| variant | graph | precision | p50 ms | p90 ms | p99 ms | vs PyTorch eager (paired) | p50 / direct "
            "floor | p50 / own graph's floor | parity: max abs prob, attention; flips | p50 / direct floor, same run |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in sorted(doc["results"], key=lambda r: r["host"]["p50_ms"]):
        v = doc["variants"].get(r["name"], {})
        fl_own = v.get("graph_matmul_flops", fl)
        pk = peaks.get(r["precision"])
        own = r["host"]["p50_ms"] / (B * fl_own / pk / 1e6) if pk else None
        par = v.get("parity")
        ptxt = (f"{par['max_abs_prob']:.1e}, {par['max_abs_attention']:.1e}; {par['decision_flips']}"
                + ("" if par["passed"] else " FAILED") if par else "reference")
        h = r["host"]
        out.append(f"| {r['name']} | {r['graph']} | {r['precision']} | {f(h['p50_ms'])} | {f(h['p90_ms'])} | "
                   f"{f(h['p99_ms'])} | {f(r['speedup_vs_torch_eager'], 2)}x | "
                   f"{f(h['p50_ms'] / floor if floor else None, 2)} | {f(own, 2)} | {ptxt} | "
                   f"{f(r.get('p50_over_direct_floor_in_run'), 2)} |")
    for name, v in doc["variants"].items():
        if "error" in v:
            out.append(f"| {name} | - | - | did not run: {v['error']} | | | | | | | |")
    out += ["", *targets_lines(doc, floor)]
    for name, prof in doc.get("profiles", {}).items():
        if "error" in prof:
            out += ["", f"Profile of {name}: failed ({prof['error']})."]
            continue
        out += ["", f"Where the time goes, {name} (runs: {prof['runs']}, {f(prof['total_ms_per_run'])} ms of operator "
                    "time per run; ONNX Runtime's profiler or OpenVINO's performance counters):", "",
                "| operator | ms per run | share |", "|---|---:|---:|"]
        out += [f"| {t['op']} | {f(t['ms_per_run'])} | {t['share']:.0%} |" for t in prof["top"]]
        out.append(f"| (the rest) | | {prof['rest_share']:.0%} |")
    return out


TARGETS = {"best_fp32": ("best fp32 path", "<= {t:.2f}x the direct floor"),
           "best_reduced_precision": ("best reduced-precision path", "<= {t:.2f}x the direct (fp32) floor")}


def floor_verdict(doc: dict, key: str, floor: float | None) -> tuple[float | None, float | None, str]:
    """(p50 / direct floor from peak_matmul.json, p50 / direct floor of the same run, verdict) for target ``key``.
    The verdict is "met" only when every available ratio meets the target: a floor measured at another time on a
    shared machine must not decide it alone."""
    t = doc["targets"][key]
    ratio = t["p50_ms"] / floor if floor else None
    row = next((r for r in doc["results"] if r["name"] == t["name"]), {})
    in_run = row.get("p50_over_direct_floor_in_run")
    ratios = [r for r in (ratio, in_run) if r is not None]
    verdict = "-" if not ratios else ("met" if max(ratios) <= t["target"] else "not met")
    return ratio, in_run, verdict


def targets_lines(doc: dict, floor: float | None) -> list[str]:
    """One line per target of the graphs run, with the floor ratio recomputed from ``floor`` (ms)."""
    out = []
    for key, (what, rule) in TARGETS.items():
        t = doc["targets"].get(key)
        if not t:
            continue
        ratio, in_run, met = floor_verdict(doc, key, floor)
        out.append(f"- {what}: {t['name']}, p50 {f(t['p50_ms'])} ms = {f(ratio, 2)}x the direct floor"
                   + (f", {f(in_run, 2)}x the floor measured in the same run" if in_run is not None else "")
                   + f" (target {rule.format(t=t['target'])}: **{met}**).")
    e = doc["targets"].get("speedup_vs_torch_eager")
    if e:
        out.append(f"- fastest path against PyTorch eager in the same run: {e['name']}, {f(e['speedup'], 2)}x "
                   f"(target >= {e['target']:g}x: **{'met' if e['met'] else 'not met'}**).")
    return out


def conv1_md(doc: dict) -> list[str]:
    """sranet-conv1-forms/1: the first convolution alone in every form, and the GEMM shapes they lower to."""
    L, st = doc["layer"], doc["settings"]
    out = [f"Conv3d(1 -> {L['out_channels']}, {L['kernel']}^3) + ReLU + MaxPool3d(2) on {L['patches']} patches of "
           f"{L['edge']}^3 ({L['direct_flops'] / 1e9:.2f} GFLOPs direct), {st['threads']} threads, every form "
           "interleaved in one process."]
    if doc.get("note"):
        out += ["", f"Note: {doc['note']}"]
    out += ["", "| form | runtime | precision | multiply-adds vs direct | p50 ms | p90 ms | vs ONNX Runtime direct "
            "(paired) |", "|---|---|---|---:|---:|---:|---:|"]
    for r in doc["forms"]:
        out.append(f"| {r['form']} | {r['runtime']} | {r['precision']} | {f(r.get('macs_vs_direct'), 2)} | "
                   f"{f(r['host']['p50_ms'])} | {f(r['host']['p90_ms'])} | {f(r['vs_ort_direct'], 2)}x |")
    out += ["", "ONNX Runtime MatMul (constant right operand) on the shapes these forms lower to, one patch, "
                "interleaved with a square product:", "",
            "| shape | m x k x n | GFLOP/s (p50) | net of extra multiply-adds | net / square |",
            "|---|---|---:|---:|---:|"]
    for g in doc["gemm_shapes"]:
        out.append(f"| {g['shape']} | {g['m']} x {g['k']} x {g['n']} | {f(g['gflops_p50'])} | {f(g['net_gflops'])} | "
                   f"{f(g['net_fraction_of_square'], 2)} |")
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
    order = {"sranet-peak-matmul/2": 0, "sranet-cpu-graphs/1": 1, "sranet-conv1-forms/1": 2,
             "sranet-cpu-backends/1": 3, "sranet-preprocess-stages/1": 4, "sranet-benchmark/1": 5}
    peaks = current_peaks(results_dir)
    docs = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            print(f"skipping {path}: not JSON ({exc})", file=sys.stderr)
            continue
        docs.append((order.get(doc.get("schema"), 6), path, doc))
    titles = {"sranet-peak-matmul/2": "Peak matrix-multiply rate (compute floor denominator)",
              "sranet-cpu-graphs/1": "Graph forms on ONNX Runtime and OpenVINO, fp32 and bf16 (model only)",
              "sranet-conv1-forms/1": "The first convolution in every form",
              "sranet-cpu-backends/1": "PyTorch eager vs ONNX Runtime on CPU",
              "sranet-preprocess-stages/1": "Preprocessing stages on a 512x512xN series",
              "sranet-benchmark/1": "`sranet benchmark`"}
    for _, path, doc in sorted(docs, key=lambda t: (t[0], t[1].name)):
        schema = doc.get("schema")
        title = titles.get(schema, "GPU check" if "torch_latency" in doc or "tensorrt" in doc else path.stem)
        cpu_only = schema in ("sranet-peak-matmul/2", "sranet-cpu-graphs/1", "sranet-conv1-forms/1",
                              "sranet-cpu-backends/1", "sranet-preprocess-stages/1")
        parts += [f"## {title} ({path.name})", ""]
        if schema != "sranet-benchmark/1":  # that one states its own date, machine and command
            parts += [provenance(doc.get("environment", {}), cpu_only=cpu_only), ""]
        body = {"sranet-peak-matmul/2": peak_md, "sranet-cpu-graphs/1": lambda d: graphs_md(d, peaks),
                "sranet-conv1-forms/1": conv1_md,
                "sranet-cpu-backends/1": lambda d: cpu_md(d, peaks["fp32"]),
                "sranet-preprocess-stages/1": stages_md}.get(schema)
        if body is not None:
            parts += body(doc)
        elif schema == "sranet-benchmark/1":
            parts.append(to_markdown(rebase_benchmark(doc, peaks["fp32"])).rstrip())
        else:
            parts += generic_md(doc)
        parts.append("")
    if not docs:
        parts.append("No results yet: run the scripts in benchmarks/ (see each script's docstring).")
    return "\n".join(parts).rstrip() + "\n"


BEGIN_RE = re.compile(r"<!-- benchmarks:begin[^>]*-->\n?")
END_MARK = "<!-- benchmarks:end -->"


def _load(results_dir: Path, name: str) -> dict | None:
    path = results_dir / name
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def measured(doc: dict) -> str:
    """'2026-11-27, AMD EPYC, 2 cores': date (UTC) and short machine name of one result file."""
    from sranet.bench.env import machine_label

    env = doc.get("environment") or {}
    date = str(env.get("date_utc") or doc.get("date") or "?")[:10]
    if isinstance(env.get("cpu"), dict):
        machine = machine_label(env, gpu=False)
    elif env.get("gpu"):
        machine = str(env["gpu"]).removeprefix("NVIDIA ")
    elif isinstance(doc.get("machine"), dict):
        m = doc["machine"]
        machine = f"{m.get('processor', '?')}, {m.get('cpus_logical', '?')} cores"
    else:
        machine = str(doc.get("machine") or env.get("cpu") or "?")
    return f"{date}, {machine}"


def _command(doc: dict) -> str:
    return str((doc.get("environment") or {}).get("command") or doc.get("command") or "?")


def summary_rows(results_dir: Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """(what, result, measured, source) rows of the README summary, and notes on rows left out."""
    peak, cpu, e2e = (_load(results_dir, n) for n in ("peak_matmul.json", "cpu_backends.json", "benchmark_cpu_e2e.json"))
    load, train, gpu = (_load(results_dir, n) for n in ("load_series.json", "train_throughput_cpu.json",
                                                         "gpu_check_h200.json"))
    graphs = _load(results_dir, "cpu_graphs.json")
    rows, notes = [], []

    def add(doc, names, what, result):
        docs = [doc] if isinstance(doc, dict) or doc is None else doc
        if any(d is None for d in docs):
            notes.append(f"{what}: not measured ({' + '.join(f'`{n}`' for n in names)} missing).")
            return
        try:
            text = result()
        except (KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
            notes.append(f"{what}: left out ({' + '.join(f'`{n}`' for n in names)} lacks {exc}).")
            return
        when = measured(docs[0]) + (" (preliminary, see its note)" if "preliminary" in str(docs[0].get("note"))
                                    else "")
        rows.append((what, text, when, " + ".join(f"`{n}`" for n in names)))

    def cpu_b1(config):
        return next(r for b in cpu["blocks"] if b["batch"] == 1 for r in b["rows"] if r["config"] == config)

    peaks = current_peaks(results_dir)
    flops = (graphs or {}).get("matmul_flops_per_volume") or (cpu or {}).get("flops_per_volume", {}).get("matmul_flops")

    def peak_row():
        bf16 = (f", bf16 {peak['peak_bf16_gflops']:.0f} GFLOP/s ({peak['peak_bf16_from']['library']})"
                if peak.get("peak_bf16_gflops") else "")
        floors = f"{flops / peak['peak_gflops'] / 1e6:.0f} ms fp32" + (
            f", {flops / peak['peak_bf16_gflops'] / 1e6:.0f} ms bf16" if peak.get("peak_bf16_gflops") else "")
        return (f"fp32 {peak['peak_gflops']:.0f} GFLOP/s ({peak['peak_from']['library']}){bf16} -> "
                f"direct-convolution floor {floors} per volume ({flops / 1e9:.2f} GFLOPs)")
    add([peak, graphs or cpu], ["peak_matmul.json", "cpu_graphs.json" if graphs else "cpu_backends.json"],
        "peak matrix multiply on this CPU (fastest of ONNX Runtime, OpenVINO, PyTorch, numpy)", peak_row)

    def graph_target(key):
        t = graphs["targets"][key]
        ratio, in_run, met = floor_verdict(graphs, key, flops / peaks["fp32"] / 1e6)
        rule = {"best_fp32": "<= 1.0x", "best_reduced_precision": "<= 0.75x"}[key]
        return (f"{t['name']}: p50 {t['p50_ms']:.0f} ms = **{ratio:.2f}x the direct floor**"
                + (f", {in_run:.2f}x the floor measured in the same run" if in_run is not None else "")
                + f" (target {rule}: **{met}**)")
    add(graphs, ["cpu_graphs.json"], "best fp32 path, model only, batch 1 (every graph and CPU runtime interleaved)",
        lambda: graph_target("best_fp32"))
    add(graphs, ["cpu_graphs.json"], "best reduced-precision path, same run",
        lambda: graph_target("best_reduced_precision"))

    def against_eager():
        rows = {r["name"]: r for r in graphs["results"]}
        e, t = rows["torch_eager"], graphs["targets"]["speedup_vs_torch_eager"]
        direct = rows.get("ort direct fp32")
        return (f"p50 {e['host']['p50_ms']:.0f} ms; {t['name']} **{t['speedup']:.1f}x faster** (target >= "
                f"{t['target']:g}x: **{'met' if t['met'] else 'not met'}**)"
                + (f"; the default ONNX (direct) on ONNX Runtime {direct['speedup_vs_torch_eager']:.1f}x"
                   if direct else ""))
    add(graphs, ["cpu_graphs.json"], "PyTorch eager fp32, same run", against_eager)

    def backend(result):
        art = e2e["artifacts"][result["artifact"]]
        b = art["backend"]
        name = b.get("backend") if isinstance(b, dict) else b
        return f"{name} spectral" if art.get("conv_impl") == "spectral" else name

    def head_to_head():
        by = {backend(r): r["host"]["p50_ms"]
              for m in e2e["model_only"] if m["batch"] == 1 for r in m["results"]}
        t, o = by["torch"], by["onnxruntime"]
        s = by.get("onnxruntime spectral")
        return (f"p50 {t:.0f} ms vs ONNX Runtime {o:.0f} ms direct: **{t / o:.2f}x**"
                + (f"; {s:.0f} ms spectral: **{t / s:.2f}x**" if s else ""))
    add(e2e, ["benchmark_cpu_e2e.json"], "PyTorch eager fp32 head to head (`sranet benchmark`, artifacts interleaved)",
        head_to_head)

    def variants():
        fp32, fp16, int8 = (cpu_b1(c)["host"]["p50_ms"] for c in ("ort_fp32", "ort_fp16", "ort_int8"))
        slow = f"{int8 / fp32:.0f}x slower" if int8 > fp32 else f"{fp32 / int8:.1f}x faster"
        return (f"{fp16:.0f} ms / {int8:.0f} ms against {fp32:.0f} ms fp32 (direct graphs, same run); ONNX Runtime "
                f"computes the fp16 graph in fp32 behind Casts, so no fp16 arithmetic runs here; int8 is {slow}")
    add(cpu, ["cpu_backends.json"], "ONNX Runtime fp16 / int8 variants on this CPU", variants)

    def stages():
        results = {backend(r): r for r in e2e["end_to_end"]["results"]}
        which = "onnxruntime spectral" if "onnxruntime spectral" in results else "onnxruntime"
        r, case = results[which], e2e["end_to_end"]["case"]
        st = r["stages"]
        return (f"{which.replace('onnxruntime', 'ONNX Runtime')}: p50 {r['total']['p50_ms']:.0f} ms: load {st['load']['p50_ms']:.0f} ({case['shape'][0]} slices "
                f"decoded), resample {st['resample']['p50_ms']:.0f}, normalise {st['normalize']['p50_ms']:.0f}, "
                f"infer {st['infer']['p50_ms']:.0f}")
    series = re.search(r"series (\d+ x \d+ x \d+)", (e2e or {}).get("note", ""))
    case = (e2e or {}).get("end_to_end", {}).get("case", {})
    roi_mm = f", {case['shape'][0] * case['spacing_mm'][0]:.0f} mm ROI" if case.get("shape") else ""
    add(e2e, ["benchmark_cpu_e2e.json"],
        f"end to end, {series.group(1) if series else '?'} DICOM series{roi_mm}", stages)

    def loading():
        by = {r["mode"]: r for r in load["runs"]}
        w, r = by["full"], by["roi"]
        return (f"{w['median_s']:.2f} s, {w['peak_rss_mib']:.0f} MiB peak RSS vs {r['median_s']:.2f} s, "
                f"{r['peak_rss_mib']:.0f} MiB")
    add(load, ["load_series.json"], "loading that series, whole vs ROI only", loading)

    def training():
        rs = train["results"]
        if not any("variant" in r for r in rs):
            return (" / ".join(f"{r['volumes_per_s']['median']:.2f}" for r in rs) + " volumes/s (batch "
                    + " / ".join(str(r["batch"]) for r in rs) + ")")
        batch = max(r["batch"] for r in rs)
        return f"batch {batch}: " + ", ".join(f"{r['variant']} {r['volumes_per_s']['median']:.2f}"
                                              for r in rs if r["batch"] == batch) + " volumes/s"
    add(train, ["train_throughput_cpu.json"], f"training step, {(train or {}).get('settings', {}).get('model', '?')} "
        "config", training)

    study_rows(results_dir, add)
    gname = str((gpu or {}).get("environment", {}).get("gpu", "GPU"))

    def gpu_torch():
        t = gpu["torch_latency"]
        e32, g16 = t["fp32_b1_eager"], t["fp16_b1_graph"]
        return (f"GPU time {e32['gpu_only']['p50_ms']:.2f} ms fp32, {g16['gpu_only']['p50_ms']:.2f} ms fp16 with CUDA "
                f"graphs; host-to-result {e32['end_to_end']['p50_ms']:.1f} / {g16['end_to_end']['p50_ms']:.1f} ms")
    add(gpu, ["gpu_check_h200.json"], f"{gname}, PyTorch CUDA backend, batch 1", gpu_torch)

    def gpu_prep():
        p = gpu["preprocessing"]["femoral_head_roi"]
        same = p["max_abs_d_hu"] == 0 and p["max_abs_d_input"] == 0
        return (f"{p['gpu']['p50_ms']:.1f} ms vs {p['cpu']['p50_ms']:.1f} ms on that host's CPU, "
                + ("identical output" if same else f"max |difference| {p['max_abs_d_input']:.2g}"))
    prep = (gpu or {}).get("preprocessing", {})
    path_name = {"cupy": "CuPy"}.get(prep.get("gpu_path"), prep.get("gpu_path") or "GPU")
    shape = " x ".join(map(str, prep.get("volume_shape") or ["?"]))
    add(gpu, ["gpu_check_h200.json"], f"{gname}, {path_name} preprocessing of a femoral-head ROI of a {shape} volume",
        gpu_prep)
    return rows, notes


def study_rows(results_dir: Path, add) -> None:
    """README rows of the whole-study path: localisation, a study end to end, batch throughput, the DICOM node."""
    loc, e2e, batch, node = (_load(results_dir, n) for n in ("localise_speed.json", "study_e2e.json",
                                                               "batch_throughput.json", "node_latency.json"))

    def verdict(value: float, target: float, higher_is_better: bool = False) -> str:
        met = value >= target if higher_is_better else value <= target
        return f"**{'met' if met else 'not met'}**"

    def localise():
        lat, target = loc["latency_ms"], loc["target_ms"]
        shape = " x ".join(map(str, loc["settings"]["shape"]))
        return (f"{shape} in memory: p50 {lat['p50_ms']:.0f} ms, p90 {lat['p90_ms']:.0f} ms (target <= "
                f"{target:.0f} ms: {verdict(lat['p50_ms'], target)}); centre errors {loc['centre_error_mm']} mm")
    add(loc, ["localise_speed.json"], "femoral-head localisation, both sides", localise)

    def study(stage: str, target: float):
        def text():
            st = e2e["stages"][stage]
            fast, slow = st["scanner"], st["pydicom"]
            return (f"p50 {fast['p50_ms']:.0f} ms, p90 {fast['p90_ms']:.0f} ms (target <= {target:.0f} ms: "
                    f"{verdict(fast['p50_ms'], target)}); all headers through pydicom: {slow['p50_ms']:.0f} ms, "
                    f"{st['ratio_pydicom_over_scanner']:.2f}x")
        return text
    what = f"{e2e['series']['shape'] if e2e and 'shape' in e2e.get('series', {}) else '300 x 512 x 512'} DICOM series"
    add(e2e, ["study_e2e.json"], f"{what}: read with a 96 mm ROI", study("load_roi", 100))
    add(e2e, ["study_e2e.json"], "the same, read + preprocess + model with the ROI", study("predict_roi", 200))
    add(e2e, ["study_e2e.json"], "the same series whole: both hips located and predicted", study("study", 400))

    def throughput():
        configs = batch["per_config"]
        base = batch["settings"]["baseline"]
        best = max((c for c in configs if c != base), key=lambda c: configs[c]["ratio_to_baseline_median"])
        b, t = configs[best], batch["target_ratio"]
        return (f"{batch['settings']['studies']} studies: {configs[base]['studies_per_s_median']:.2f} studies/s one "
                f"after the other; best read-ahead (prefetch:threads {best}) {b['studies_per_s_median']:.2f} "
                f"studies/s = **{b['ratio_to_baseline_median']:.2f}x** (target >= {t:g}x: "
                f"{verdict(b['ratio_to_baseline_median'], t, higher_is_better=True)})")
    add(batch, ["batch_throughput.json"], "`sranet predict` over whole studies, batch throughput", throughput)

    def node_latency():
        lat, target = node["latency_beyond_idle_ms"], node["target_beyond_idle_s"]
        st = node["node_stage_p50_s"]
        return (f"p50 {lat['p50_ms'] / 1e3:.2f} s, p90 {lat['p90_ms'] / 1e3:.2f} s beyond the {node['settings']['idle_s']:g} s "
                f"idle wait (target <= {target:g} s: {verdict(lat['p50_ms'] / 1e3, target)}): choose series "
                f"{st['choose_series_s']:.2f}, read {st['read_s']:.2f}, locate {st['locate_s']:.2f}, model and "
                f"post-processing {st['predict_after_locate_s']:.2f}, DICOM objects {st['build_outputs_s']:.2f}, send "
                f"{st['send_s']:.2f} s; {node['settings']['in_flight']} studies in flight: "
                f"{node['studies_per_min']['median']:.1f} studies/min")
    add(node, ["node_latency.json"], "`sranet serve`: last instance received -> results stored in Orthanc, 300-slice "
        "study", node_latency)


def readme_section(results_dir: Path) -> str:
    """The markdown that goes between the README markers: summary table, notes, one command line per source."""
    rows, notes = summary_rows(results_dir)
    out = ["| what | result | measured | source |", "|---|---|---|---|"]
    out += [f"| {w} | {r} | {m} | {s} |" for w, r, m, s in rows]
    if notes:
        out += ["", *notes]
    out += ["", "Commands:", ""]
    for name in sorted({n.strip("`") for row in rows for n in row[3].split(" + ")}):
        out.append(f"- `{name}`: `{_command(_load(results_dir, name))}`")
    return "\n".join(out) + "\n"


def update_readme(readme: Path, results_dir: Path) -> bool:
    """Rewrite the text between the benchmark markers of ``readme``; True when it changed.

    Raises InputError when a marker is missing or out of order (nothing is written then)."""
    from sranet.errors import InputError

    text = readme.read_text()
    begin = BEGIN_RE.search(text)
    end = text.find(END_MARK, begin.end() if begin else 0)
    if begin is None or end < 0:
        raise InputError(f"no benchmark markers: expected a line '<!-- benchmarks:begin ... -->' followed later by "
                         f"'{END_MARK}'.", path=readme,
                         hint="Add both markers around the place where the summary table belongs, then rerun "
                              "benchmarks/make_tables.py.")
    new = text[:begin.end()] + readme_section(results_dir) + text[end:]
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--readme", type=Path, default=None,
                    help="README whose <!-- benchmarks:begin/end --> section is rewritten (default: the repository's "
                         "README.md, but only when --results is the default, so other results never land in it)")
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args.results))
    print(f"wrote {args.out}", file=sys.stderr)
    readme = args.readme or (ROOT / "README.md" if args.results.resolve() == RESULTS.resolve() else None)
    if readme is not None:
        changed = update_readme(readme, args.results)
        print(f"{'updated' if changed else 'unchanged'}: benchmark summary in {readme}", file=sys.stderr)
    return args.out


if __name__ == "__main__":
    main()
