"""The ``sranet-benchmark/1`` JSON document: its schema, a validator, and Markdown tables.

Document layout (all times in ms, memory in MiB, throughput in volumes/s):

    schema        "sranet-benchmark/1"
    environment   date_utc, command, platform, python, cpu{model, logical_cores, physical_cores, usable_cores,
                  flags}, memory_total_gib, gpus[{name, driver, memory_total, compute_capability}], libraries{},
                  threads{requested, OMP_NUM_THREADS, ..., OPENBLAS_CORETYPE}
    settings      batches, warmup_s, warmup_iters, min_iters, duration_s, max_iters, threads, interleaved,
                  percentile_method, outliers_removed, throughput, cold_start_note
    compute       peak_gflops (measured by benchmarks/peak_matmul.py, or null), floor
    artifacts[]   label, path, sha256, backend{}, precision, model_config{}, flops_per_volume{conv, linear,
                  attention, head, other, matmul_flops, total_flops}, conv_impl, spectral_layers[],
                  graph_matmul_flops (what the graph computes; below matmul_flops for spectral graphs), options_applied,
                  cold_start{load_ms, first_infer_ms, total_ms}, rss_after_load_mib
    model_only[]  batch, device_timing, results[{artifact, host: Summary, device: Summary|null,
                  ratio_vs_first{p50_ratio, paired_median_ratio}, floor_ms?, p50_over_floor?, graph_floor_ms?,
                  p50_over_graph_floor?}], skipped[]
    end_to_end    null, or case{kind, shape, spacing_mm, ...}, stage_order[], results[{artifact, total: Summary,
                  stages{name: Summary}}]
    memory        peak_rss_mib, device_peak_mib|null
    throughput    (optional) inputs, rounds, baseline_prefetch, results[{prefetch, studies_per_s_median,
                  ratio_vs_first_median}], runs[{round, prefetch, wall_s, studies_per_s, predicted, refused, failed}]

    Summary       n, min_ms, mean_ms, std_ms, p50_ms, p90_ms, p95_ms, p99_ms, max_ms, throughput_vol_s
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sranet.errors import InputError

NUM = ["number", "integer"]
SUMMARY = {
    "type": "object",
    "required": ["n", "min_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms",
                 "throughput_vol_s"],
    "properties": {"n": {"type": "integer"}, **{k: {"type": NUM} for k in (
        "min_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "throughput_vol_s")}},
}
# A JSON Schema (draft 2020-12 subset: type, required, properties, items, enum) of the document.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "environment", "settings", "compute", "artifacts", "model_only", "end_to_end", "memory"],
    "properties": {
        "schema": {"enum": ["sranet-benchmark/1"]},
        "environment": {"type": "object", "required": ["date_utc", "command", "cpu", "gpus", "libraries", "threads"],
                        "properties": {"date_utc": {"type": "string"}, "command": {"type": "string"},
                                       "cpu": {"type": "object", "required": ["model", "logical_cores"]},
                                       "gpus": {"type": "array"}, "libraries": {"type": "object"},
                                       "threads": {"type": "object"}}},
        "settings": {"type": "object", "required": ["batches", "warmup_s", "min_iters", "duration_s", "interleaved",
                                                    "outliers_removed"]},
        "compute": {"type": "object", "required": ["peak_gflops"]},
        "artifacts": {"type": "array", "items": {
            "type": "object",
            "required": ["label", "sha256", "backend", "precision", "flops_per_volume", "cold_start"],
            "properties": {"sha256": {"type": "string"},
                           "cold_start": {"type": "object", "required": ["load_ms", "first_infer_ms", "total_ms"]},
                           "flops_per_volume": {"type": "object", "required": ["matmul_flops", "total_flops"]}}}},
        "model_only": {"type": "array", "items": {
            "type": "object", "required": ["batch", "results", "skipped"],
            "properties": {"batch": {"type": "integer"}, "results": {"type": "array", "items": {
                "type": "object", "required": ["artifact", "host", "device", "ratio_vs_first"],
                "properties": {"artifact": {"type": "integer"}, "host": SUMMARY,
                               "device": {"type": ["object", "null"]},
                               "ratio_vs_first": {"type": "object",
                                                  "required": ["p50_ratio", "paired_median_ratio"]}}}}}}},
        "end_to_end": {"type": ["object", "null"], "required": ["case", "stage_order", "results"],
                       "properties": {"results": {"type": "array", "items": {
                           "type": "object", "required": ["artifact", "total", "stages"],
                           "properties": {"total": SUMMARY, "stages": {"type": "object"}}}}}},
        "memory": {"type": "object", "required": ["peak_rss_mib", "device_peak_mib"]},
        "throughput": {"type": ["object", "null"], "required": ["inputs", "rounds", "baseline_prefetch", "results",
                                                                "runs"],
                       "properties": {"results": {"type": "array", "items": {
                           "type": "object", "required": ["prefetch", "studies_per_s_median",
                                                          "ratio_vs_first_median"]}}}},
    },
}
_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "null": type(None),
          "boolean": bool}


def _errors(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    errs: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in types)
        if not ok:
            return [f"{where}: expected {' or '.join(types)}, got {type(value).__name__}"]
    if isinstance(value, dict):
        errs += [f"{where}: missing key {k!r}" for k in schema.get("required", []) if k not in value]
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                errs += _errors(value[k], sub, f"{where}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errs += _errors(item, schema["items"], f"{where}[{i}]")
    return errs


def validate_result(doc: Any) -> None:
    """Raise InputError listing every way ``doc`` departs from ``SCHEMA``; return None when it conforms."""
    errs = _errors(doc, SCHEMA, "$")
    if errs:
        shown = "; ".join(errs[:8]) + (f"; ... ({len(errs) - 8} more)" if len(errs) > 8 else "")
        raise InputError(f"benchmark result does not match schema sranet-benchmark/1: {shown}.",
                         hint="Regenerate it with `sranet benchmark ... --json OUT` from this version.")


def load_result(path: str | Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read benchmark JSON ({exc}).", path=path) from exc
    validate_result(doc)
    return doc


def write_json(doc: dict[str, Any], path: str | Path) -> Path:
    validate_result(doc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=False, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def to_markdown(doc: dict[str, Any]) -> str:
    """Markdown: header (date, machine, command), model-only table per batch, cold start, end-to-end stages."""
    from sranet.bench.env import machine_label

    env = doc["environment"]
    libs = ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items()
                     if k in ("onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "numpy"))
    lines = [f"Measured {env['date_utc']} on {machine_label(env)} ({libs}); command: `{env['command']}`.",
             f"Settings: warm-up {doc['settings']['warmup_s']} s, >= {doc['settings']['min_iters']} rounds over "
             f">= {doc['settings']['duration_s']} s, artifacts interleaved round-robin, no outliers removed; "
             f"percentiles: numpy linear.", ""]
    lines += _model_only_md(doc) + _cold_start_md(doc) + _end_to_end_md(doc) + _throughput_md(doc)
    mem = doc.get("memory", {})
    lines += ["", f"Peak host RSS {_f(mem.get('peak_rss_mib'))} MiB"
              + (f"; peak device memory {_f(mem['device_peak_mib'])} MiB." if mem.get("device_peak_mib") else ".")]
    return "\n".join(lines) + "\n"


def _model_only_md(doc: dict[str, Any]) -> list[str]:
    """The model-only table (a floor column when the peak rate is known) and a note per spectral graph."""
    arts, peak = doc["artifacts"], doc["compute"].get("peak_gflops")
    head = "| artifact | batch | p50 ms | p90 ms | p99 ms | mean ms | min ms | max ms | vol/s | vs first (paired) |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if peak:
        head += " floor ms | p50/floor |"
        sep += "---:|---:|"
    lines = ["**Model only** (input already in memory)", "", head, sep]
    for block in doc["model_only"]:
        for r in block["results"]:
            h, a = r["host"], arts[r["artifact"]]
            row = (f"| {a['label']} | {block['batch']} | {_f(h['p50_ms'])} | {_f(h['p90_ms'])} | {_f(h['p99_ms'])} | "
                   f"{_f(h['mean_ms'])} | {_f(h['min_ms'])} | {_f(h['max_ms'])} | {_f(h['throughput_vol_s'], 2)} | "
                   f"{_f(r['ratio_vs_first']['paired_median_ratio'], 2)}x |")
            if peak:
                row += f" {_f(r.get('floor_ms'))} | {_f(r.get('p50_over_floor'), 2)} |"
            lines.append(row)
        for s in block["skipped"]:
            lines.append(f"| {arts[s['artifact']]['label']} | {block['batch']} | skipped: {s['reason']} |")
    for a in arts:
        if a.get("spectral_layers"):
            lines.append(f"\n{a['label']}: spectral graph (Conv3d layers {a['spectral_layers']} as DFT matrix "
                         f"products), {a['graph_matmul_flops'] / 1e9:.3g} GFLOP per volume against the model's "
                         f"{a['flops_per_volume']['matmul_flops'] / 1e9:.3g}; the floor column uses the model's count"
                         + ("".join(f"; p50 / its own graph floor at batch {b['batch']}: "
                                    f"{_f(r.get('p50_over_graph_floor'), 2)}" for b in doc["model_only"]
                                    for r in b["results"] if arts[r["artifact"]] is a and peak)) + ".")
    return lines


def _cold_start_md(doc: dict[str, Any]) -> list[str]:
    lines = ["", "**Cold start** (load + first inference)", "", "| artifact | load ms | first inference ms | "
             "total ms | RSS after load MiB |", "|---|---:|---:|---:|---:|"]
    for a in doc["artifacts"]:
        c = a["cold_start"]
        lines.append(f"| {a['label']} | {_f(c['load_ms'])} | {_f(c['first_infer_ms'])} | {_f(c['total_ms'])} | "
                     f"{_f(a.get('rss_after_load_mib'))} |")
    return lines


def _throughput_md(doc: dict[str, Any]) -> list[str]:
    """Batch throughput per prefetch setting (``sranet benchmark --study ...``), when it was run."""
    t = doc.get("throughput")
    if not t:
        return []
    label = doc["artifacts"][t["artifact"]]["label"]
    lines = ["", f"**Batch throughput** ({label}, {t['inputs']} inputs, {t['rounds']} rounds, settings interleaved; "
             f"`--prefetch`: inputs read ahead while the model runs)", "",
             "| prefetch | studies/s (median) | vs prefetch " + str(t["baseline_prefetch"]) + " (median of rounds) |",
             "|---:|---:|---:|"]
    lines += [f"| {r['prefetch']} | {r['studies_per_s_median']:.3f} | {r['ratio_vs_first_median']:.2f}x |"
              for r in t["results"]]
    return lines


def _end_to_end_md(doc: dict[str, Any]) -> list[str]:
    """p50 (p90) per stage and in total, one row per artifact; nothing without an end-to-end run."""
    e2e = doc.get("end_to_end")
    if not e2e:
        return []
    case, arts = e2e["case"], doc["artifacts"]
    lines = ["", f"**End to end**, one case ({case.get('kind')}, shape {case.get('shape')}, spacing "
                 f"{case.get('spacing_mm')} mm): p50 (p90) ms per stage", ""]
    names = list(e2e["stage_order"])
    cols = names + sorted({k for r in e2e["results"] for k in r["stages"] if k not in names})
    lines += ["| artifact | " + " | ".join(cols) + " | total |", "|---|" + "---:|" * (len(cols) + 1)]
    for r in e2e["results"]:
        cells = [f"{_f(r['stages'][c]['p50_ms'])} ({_f(r['stages'][c]['p90_ms'])})" if c in r["stages"] else "-"
                 for c in cols]
        t = r["total"]
        lines.append(f"| {arts[r['artifact']]['label']} | " + " | ".join(cells) +
                     f" | {_f(t['p50_ms'])} ({_f(t['p90_ms'])}) |")
    return lines
