"""``sranet benchmark``: model-only and end-to-end latency, cold start, several artifacts interleaved, and the
batch throughput of whole studies with inputs read ahead (``--study``, ``--prefetch``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import BackendDeviceOpt, ProviderOpt, SpacingOpt, ThreadsOpt, cli_errors, parse_spacing
from sranet.errors import InputError


def _parse_batches(text: str, option: str = "--batch", low: int = 1) -> tuple[int, ...]:
    """A comma-separated list of integers >= ``low`` (``option`` names it in the error)."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or any(v < low for v in values):
        example = "--batch 1,4,16" if option == "--batch" else f"{option} 0,1"
        raise InputError(f"{option} {text!r} is not a comma-separated list of integers >= {low}. Example: {example}")
    return values


def _command_line(values: dict) -> list[str]:
    """The command as parsed (not sys.argv, which is the test runner's under CliRunner), for the report."""
    argv = ["sranet", "benchmark", *map(str, values["artifacts"])]
    for name in ("input", "synthetic", "batch", "warmup_s", "warmup_iters", "min_iters", "duration_s", "device",
                 "threads", "provider", "roi", "spacing_mm", "peak_gflops", "study", "prefetch", "throughput_rounds"):
        value = values[name]
        flag = "--" + name.replace("_", "-")
        if name == "study":
            for path in value or []:
                argv += [flag, str(path)]
        elif name in ("prefetch", "throughput_rounds") and not values["study"]:
            continue
        elif value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, str(value)]
    return argv


@cli_errors
def benchmark(
    artifacts: Annotated[list[Path], typer.Argument(help="Artifacts (.onnx, .pt, .engine); the first is the reference for ratios.")],
    input: Annotated[Path | None, typer.Option("--input", help="A case (DICOM folder, NIfTI, npy) for the end-to-end run.")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="End-to-end run on a synthetic phantom written to a temp folder.")] = False,
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes for the model-only run, comma-separated.")] = "1",
    warmup_s: Annotated[float, typer.Option("--warmup-s", help="Warm-up time per run, seconds (and at least --warmup-iters rounds).")] = 2.0,
    warmup_iters: Annotated[int, typer.Option("--warmup-iters", help="Warm-up rounds at least.")] = 2,
    min_iters: Annotated[int, typer.Option("--min-iters", help="Measured rounds at least (each round runs every artifact once).")] = 10,
    duration_s: Annotated[float, typer.Option("--duration-s", help="Measured time per run at least, seconds.")] = 10.0,
    device: BackendDeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    provider: ProviderOpt = None,
    roi: Annotated[str | None, typer.Option("--roi", help="ROI for the end-to-end case: 'd0:d1,h0:h1,w0:w1' or 'mm:x0:x1,y0:y1,z0:z1'; 'whole': the volume is the crop. Default: the case is a whole study (locate, then every hip found).")] = None,
    spacing_mm: SpacingOpt = None,
    peak_gflops: Annotated[float | None, typer.Option("--peak-gflops", help="This machine's peak fp32 GFLOP/s (benchmarks/peak_matmul.py) to show latency / compute floor.")] = None,
    study: Annotated[list[Path] | None, typer.Option("--study", help="An input for the batch-throughput run (repeat the option): the first artifact predicts all of them as `sranet predict` does (whole studies: both hips), once per --prefetch setting, the settings interleaved.")] = None,
    prefetch: Annotated[str, typer.Option("--prefetch", help="Read-ahead settings for the throughput run, comma-separated; the first is the baseline of the ratios.")] = "0,1",
    throughput_rounds: Annotated[int, typer.Option("--throughput-rounds", min=1, help="Rounds of the throughput run.")] = 2,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the sranet-benchmark/1 JSON here.")] = None,
    markdown_out: Annotated[Path | None, typer.Option("--markdown", help="Write Markdown tables here.")] = None,
) -> None:
    """Measure latency (min, mean, p50/p90/p95/p99, max, throughput), cold start and memory of one or more artifacts."""
    from sranet.bench.report import to_markdown, write_json
    from sranet.bench.runner import EndToEnd, Settings, run_benchmark
    from sranet.bench.throughput import Throughput

    argv = _command_line(locals())
    settings = Settings(batches=_parse_batches(batch), warmup_s=warmup_s, warmup_iters=warmup_iters,
                        min_iters=min_iters, duration_s=duration_s, threads=threads, device=device, provider=provider)
    spacing = parse_spacing(spacing_mm)
    case = None
    if input is not None or synthetic:
        case = EndToEnd(input, synthetic=synthetic, spacing_mm=spacing, roi=roi)
    throughput = None
    if study:
        throughput = Throughput(tuple(str(p) for p in study), prefetch=_parse_batches(prefetch, "--prefetch", 0),
                                rounds=throughput_rounds)
    doc = run_benchmark([str(a) for a in artifacts], settings, case=case, peak_gflops=peak_gflops, argv=argv,
                        log=lambda msg: typer.echo(msg, err=True))
    if throughput is not None:
        from sranet.bench.throughput import throughput_block

        typer.echo(f"batch throughput over {len(throughput.studies)} inputs", err=True)
        doc["throughput"] = throughput_block(artifacts[0], throughput, settings)
    if json_out is not None:
        write_json(doc, json_out)
    markdown = to_markdown(doc)
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text(markdown)
    typer.echo(markdown)
