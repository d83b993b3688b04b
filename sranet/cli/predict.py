"""``sranet predict``: run an artifact on many cases; one JSON line per case (per hip of a whole study), resumable,
heatmaps on request."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import (
    BackendDeviceOpt,
    MaxVolumeOpt,
    ProviderOpt,
    SpacingOpt,
    ThreadsOpt,
    TrustedKeyOpt,
    check_output_folder,
    cli_errors,
    parse_spacing,
    progress_enabled,
)


@cli_errors
def predict(
    artifact: Annotated[Path, typer.Argument(help="Exported model: .onnx (ONNX Runtime), .pt (PyTorch), .engine/.plan (TensorRT).")],
    inputs: Annotated[list[Path] | None, typer.Argument(help="Whole studies (or crops, with --roi whole): DICOM series folders, DICOM files, NIfTI or .npy volumes.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results file (JSON Lines); appended to, and a rerun skips cases already in it.")] = Path("results.jsonl"),
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m", help="Manifest CSV (case_id, path, roi, ...): predict its cases too.")] = None,
    heatmaps: Annotated[Path | None, typer.Option("--heatmaps", help="Folder for attention overlays (PNG) and attention maps on the input grid (NIfTI).")] = None,
    dicom_out: Annotated[Path | None, typer.Option("--dicom-out", help="Folder for DICOM results of each DICOM input, in a subfolder named by its case key: a Comprehensive 3D SR with each hip's finding, a Parametric Map of each assessed hip's attention (and, with --heatmaps, a Secondary Capture of the picture). Needs highdicom (pip install 'sranet[dicom-node]').")] = None,
    roi: Annotated[str | None, typer.Option("--roi", help="Femoral-head box for every input instead of finding the heads: 'd0:d1,h0:h1,w0:w1' (voxels) or 'mm:x0:x1,y0:y1,z0:z1' (LPS mm); 'whole': the whole volume is the crop (data already cropped; flagged no_roi).")] = None,
    predict_metal: Annotated[bool, typer.Option("--predict-metal", help="Predict a hip with metal (prosthesis, screws) near its head too, flagged metal_near_head; by default it is skipped with a record saying why.")] = False,
    series: Annotated[str | None, typer.Option("--series", help="SeriesInstanceUID to use where a folder holds several series.")] = None,
    spacing_mm: SpacingOpt = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Cases per backend call.")] = 1,
    prefetch: Annotated[int, typer.Option("--prefetch", help="Inputs read and preprocessed ahead on a background thread while the model infers (0: one after the other); each holds its volume in memory until its hips are inferred.")] = 1,
    device: BackendDeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    provider: ProviderOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="How many top-attention patches to report.")] = 3,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="On a rerun, try again the cases recorded with an error.")] = False,
    preprocess_on: Annotated[str, typer.Option("--preprocess-on", help="Resample and normalise on the 'cpu' (numpy, the reference) or the 'gpu' (CuPy).")] = "cpu",
    max_volume_gib: MaxVolumeOpt = None,
    trusted_key: TrustedKeyOpt = None,
) -> None:
    """Predict AVNFH probability, decision and attention for each hip; write one JSON line per hip to --out.

    Without --roi each input is a whole study: it is read once, its femoral heads are found, and each hip is
    predicted (roi_source auto). A side without a femoral head, or with metal near it, gets a record saying why and
    no probability. A failing case is recorded with its error and the others go on; the exit code is 1 if any case
    failed (a side refused for want of a femoral head is not a failure). The artifact's content digest is checked
    before anything runs (and, with --trusted-key, its signature); --out is locked while the run writes to it.
    """
    from sranet.runtime.batch import cases_from, check_heatmaps_dir, predict_batch
    from sranet.runtime.integrity import load_trusted_keys
    from sranet.runtime.limits import check_batch, check_prefetch
    from sranet.runtime.predictor import Predictor
    from sranet.runtime.results import check_results_path

    check_results_path(out)
    check_batch(batch)
    check_prefetch(prefetch)
    cases = cases_from(inputs or [], manifest=manifest, roi=roi, series=series, spacing_mm=parse_spacing(spacing_mm),
                       max_gib=max_volume_gib)
    check_heatmaps_dir(heatmaps)
    if heatmaps is not None:
        check_output_folder(heatmaps, "--heatmaps")
    if dicom_out is not None:
        from sranet.runtime.dicom_out.writer import require_highdicom

        check_output_folder(dicom_out, "--dicom-out")
        require_highdicom()
    trusted = load_trusted_keys(trusted_key) if trusted_key else None
    options = {} if provider is None else {"provider": provider}
    with Predictor.from_artifact(artifact, device=device, threads=threads, top_k=top_k, preprocess_on=preprocess_on,
                                 trusted_keys=trusted, **options) as predictor:
        summary = predict_batch(predictor, cases, out, batch=batch, retry_failed=retry_failed, heatmaps=heatmaps,
                                progress=progress_enabled(), predict_metal=predict_metal, dicom_out=dicom_out,
                                prefetch=prefetch)
    if summary.truncated_bytes:
        typer.echo(f"{out}: dropped a partial last line ({summary.truncated_bytes} bytes) left by an interrupted run.",
                   err=True)
    skip_text = f", {summary.skipped} already in {out.name} (skipped)" if summary.skipped else ""
    refused_text = (f", {summary.refused} refused (no femoral head found, or metal near it: see their messages)"
                    if summary.refused else "")
    typer.echo(f"{summary.predicted} predicted, {summary.failed} failed{refused_text}{skip_text} -> {out}")
    if dicom_out is not None:
        failed_text = (f"; {summary.dicom_failed} could not be written (see their records' dicom_out)"
                       if summary.dicom_failed else "")
        typer.echo(f"DICOM results of {summary.dicom_written} inputs -> {dicom_out}{failed_text}")
    if summary.failed:
        typer.echo(f"Error: {summary.failed} of {summary.predicted + summary.failed} cases failed; their errors are "
                   f"recorded in {out}.", err=True)
        raise typer.Exit(1)
