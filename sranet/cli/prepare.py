"""``sranet prepare``: preprocess a manifest's cases into the cache that training reads (volume, bone mask, lesion)."""

from __future__ import annotations

from typing import Annotated

import typer

from sranet.cli._common import ManifestOpt, MaxVolumeOpt, OutDirOpt, check_output_folder, cli_errors, progress_enabled


@cli_errors
def prepare(
    manifest: ManifestOpt,
    out: OutDirOpt,
    model: Annotated[str | None, typer.Option("--model", help="Model preset the cache is for: paper (128^3), small (64^3) or tiny (48^3). Default: paper.")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Output edge S in voxels instead of --model (a multiple of 4).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Cases prepared in parallel (processes).")] = 1,
    include_metal: Annotated[bool, typer.Option("--include-metal", help="Rows with automatic ROIs: prepare a hip with metal (prosthesis, screws) near its head too, instead of failing it.")] = False,
    max_volume_gib: MaxVolumeOpt = None,
) -> None:
    """Write OUT/cache.json, OUT/cases.csv, OUT/volumes, OUT/masks, OUT/lesions; failed cases go to OUT/failures.jsonl.

    A row with a side and no roi is a hip of a whole study: its femoral head is found by the localiser (qc
    roi_auto in cases.csv). Cases already in the cache are skipped once their files are checked against the sizes
    and SHA-256 recorded when they were written (a damaged one is prepared again), so a rerun finishes an
    interrupted run. Exit code 1 if any case failed.
    """
    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.data.prepare import prepare_cache
    from sranet.errors import InputError

    if model is not None and size is not None:
        raise InputError(f"--model {model} and --size {size} both set the output size; give only one.")
    check_output_folder(out, "--out")
    grid = ModelConfig().grid
    if size is not None:
        cfg = PreprocessConfig(output_size=size)
    else:
        preset = ModelConfig.preset(model or "paper")
        cfg, grid = PreprocessConfig.for_model(preset), preset.grid
    result = prepare_cache(manifest, out, cfg, grid=grid, workers=workers, progress=progress_enabled(),
                           include_metal=include_metal, max_gib=max_volume_gib)
    rebuilt = f" (of them {len(result.rebuilt)} whose cached files were damaged)" if result.rebuilt else ""
    typer.echo(f"prepared {len(result.done)} case(s){rebuilt}, skipped {len(result.skipped)} already cached, "
               f"{len(result.failures)} failed ({result.seconds:.1f} s); cache {out}")
    if result.auto_roi:
        typer.echo(f"{len(result.auto_roi)} case(s) cropped around the femoral head the localiser found (rows with "
                   "a side and no roi; qc roi_auto in cases.csv, the head in meta/<case>.json)")
    if result.failures:
        for f in result.failures[:5]:
            typer.echo(f"  failed {f['case_id']}: {f['error']}: {f['message']}", err=True)
        typer.echo(f"Error: {len(result.failures)} case(s) failed; see {out / 'failures.jsonl'}.", err=True)
        raise typer.Exit(1)
