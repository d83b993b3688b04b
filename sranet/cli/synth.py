"""``sranet synth``: write a synthetic AVNFH dataset (DICOM series + lesion masks + manifest CSV)."""

from __future__ import annotations

from typing import Annotated

import typer

from sranet.cli._common import OutDirOpt, SeedOpt, cli_errors, progress_enabled


@cli_errors
def synth(
    out: OutDirOpt,
    cases: Annotated[int, typer.Option("--cases", "-n", help="Number of cases (phantoms) to write.")] = 200,
    seed: SeedOpt = 0,
    size: Annotated[str, typer.Option("--size", help="Volume shape D x H x W in voxels, e.g. 96x128x128, or one edge.")] = "96x128x128",
    stage_mix: Annotated[str, typer.Option("--stage-mix", help="ARCO stage weights 'stage:weight,...'; stage I is invisible on CT (label noise).")] = "0:0.5,1:0.05,2:0.15,3:0.15,4:0.15",
    workers: Annotated[int, typer.Option("--workers", help="Processes generating cases in parallel.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a folder that already holds a manifest.csv.")] = False,
) -> None:
    """Write OUT/manifest.csv, OUT/cases/<id>/slice_*.dcm, OUT/lesions/<id>.npy: CT-like femoral head phantoms by ARCO stage."""
    from sranet.data.synthetic_dataset import parse_shape, parse_stage_mix, write_dataset

    manifest = write_dataset(out, cases, seed=seed, shape=parse_shape(size), stage_mix=parse_stage_mix(stage_mix),
                             workers=workers, overwrite=overwrite, progress=progress_enabled())
    typer.echo(f"wrote {cases} synthetic cases; manifest {manifest}")
