"""``sranet predict``: run an artifact on many cases; one JSON line per case, resumable, heatmaps on request."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import ThreadsOpt, cli_errors, progress_enabled


@cli_errors
def predict(
    artifact: Annotated[Path, typer.Argument(help="Exported model: .onnx (ONNX Runtime), .pt (PyTorch), .engine/.plan (TensorRT).")],
    inputs: Annotated[list[Path] | None, typer.Argument(help="DICOM series folders, DICOM files, NIfTI or .npy volumes.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results file (JSON Lines); appended to, and a rerun skips cases already in it.")] = Path("results.jsonl"),
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m", help="Manifest CSV (case_id, path, roi, ...): predict its cases too.")] = None,
    heatmaps: Annotated[Path | None, typer.Option("--heatmaps", help="Folder for attention overlays (PNG) and attention maps on the input grid (NIfTI).")] = None,
    roi: Annotated[str | None, typer.Option("--roi", help="Femoral-head box for every input: 'd0:d1,h0:h1,w0:w1' (voxels) or 'mm:x0:x1,y0:y1,z0:z1' (LPS mm).")] = None,
    series: Annotated[str | None, typer.Option("--series", help="SeriesInstanceUID to use where a folder holds several series.")] = None,
    spacing_mm: Annotated[str | None, typer.Option("--spacing-mm", help="Voxel spacing 'sD,sH,sW' in mm for .npy inputs without a JSON sidecar.")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Cases per backend call.")] = 1,
    threads: ThreadsOpt = 0,
    provider: Annotated[str | None, typer.Option("--provider", help="ONNX Runtime provider: cpu, cuda or tensorrt (default: best available).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="How many top-attention patches to report.")] = 3,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="On a rerun, try again the cases recorded with an error.")] = False,
    preprocess_on: Annotated[str, typer.Option("--preprocess-on", help="Resample and normalise on the 'cpu' (numpy, the reference) or the 'gpu' (CuPy).")] = "cpu",
) -> None:
    """Predict AVNFH probability, decision and attention for each case; write one JSON line per case to --out.

    A failing case is recorded with its error and the others go on; the exit code is 1 if any case failed.
    """
    from collections import Counter

    from sranet.errors import InputError, SranetError
    from sranet.runtime.predictor import CaseInput, Predictor
    from sranet.runtime.results import ResultsWriter

    spacing = _parse_spacing(spacing_mm)
    cases = [CaseInput(p, roi=roi, series=_folders_only(p, series), spacing_mm=_npy_only(p, spacing))
             for p in (inputs or [])]
    if manifest is not None:
        from sranet.data.manifest import read_manifest
        from sranet.runtime.roi import parse_roi

        for c in read_manifest(manifest):
            case_roi = parse_roi(c.roi, c.side) if c.roi else roi
            cases.append(CaseInput(c.path, case_id=c.case_id, roi=case_roi, series=_folders_only(c.path, series),
                                   spacing_mm=_npy_only(c.path, spacing)))
    if heatmaps is not None and heatmaps.exists() and not heatmaps.is_dir():
        raise InputError(f"--heatmaps {heatmaps} is a file; it names a folder for the PNG and NIfTI maps.",
                         hint="Give a folder path (it is created if missing).")
    if not cases:
        raise InputError("no inputs given.", hint="Pass DICOM folders / NIfTI / .npy paths, or --manifest CSV.")
    keys = [c.key for c in cases]
    dupes = sorted(k for k, n in Counter(keys).items() if n > 1)
    if dupes:
        raise InputError(f"several inputs map to the same case key {dupes[0]!r}; each case must appear once.")

    options: dict = {}
    if artifact.suffix.lower() in (".engine", ".plan"):  # TensorRTBackend takes no thread count
        if threads:
            raise InputError(f"--threads applies to .onnx and .pt artifacts; {artifact.name} runs on the GPU.")
    else:
        options["threads"] = threads
    if provider is not None:
        if artifact.suffix.lower() != ".onnx":
            raise InputError(f"--provider applies to .onnx artifacts; {artifact.name} runs on its own backend.")
        options["providers"] = provider
    predictor = Predictor.from_artifact(artifact, top_k=top_k, preprocess_on=preprocess_on, **options)

    with ResultsWriter(out, retry_failed=retry_failed) as writer:
        if writer.truncated_bytes:
            typer.echo(f"{out}: dropped a partial last line ({writer.truncated_bytes} bytes) left by an interrupted run.", err=True)
        todo = [c for c in cases if c.key not in writer.done]
        skipped = len(cases) - len(todo)
        failed = 0
        bar = None
        if progress_enabled():
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="case", desc="predict")
        try:
            for case, result in predictor.predict_many(todo, batch=batch):
                if isinstance(result, Exception):
                    failed += 1
                    writer.write({"case": case.key, "source": _source(case), "error": type(result).__name__,
                                  "message": str(result), "model_sha256": predictor.model_sha256})
                else:
                    record = result.to_record()
                    if heatmaps is not None:
                        from sranet.runtime.heatmap import write_heatmaps

                        try:
                            record["heatmaps"] = write_heatmaps(result, heatmaps, predictor.info.model.input_size)
                        except (SranetError, OSError) as exc:  # the prediction itself is still recorded
                            record["qc"].append(f"heatmap_failed: {exc}")
                    writer.write(record)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            predictor.close()

    done = len(todo) - failed
    skip_text = f", {skipped} already in {out.name} (skipped)" if skipped else ""
    typer.echo(f"{done} predicted, {failed} failed{skip_text} -> {out}")
    if failed:
        typer.echo(f"Error: {failed} of {len(todo)} cases failed; their errors are recorded in {out}.", err=True)
        raise typer.Exit(1)


def _source(case) -> str:
    from sranet.runtime.predictor import _display_source

    return _display_source(case.source)


def _folders_only(path, series):
    """--series chooses among the series of a DICOM folder; files in the same run (NIfTI, .npy, one DICOM) hold one."""
    return series if Path(path).is_dir() else None


def _npy_only(path, spacing):
    """--spacing-mm is for .npy inputs; DICOM and NIfTI inputs in the same run carry their own spacing."""
    return spacing if str(path).lower().endswith(".npy") else None


def _parse_spacing(text: str | None) -> tuple[float, float, float] | None:
    from sranet.errors import InputError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v > 0 for v in values):
        raise InputError(f"--spacing-mm {text!r} must be three positive numbers 'sD,sH,sW' (mm), e.g. 1.0,0.7,0.7.")
    return values  # type: ignore[return-value]
