"""``sranet synth``: write a synthetic AVNFH dataset (DICOM series + lesion masks + manifest CSV)."""

from __future__ import annotations

from typing import Annotated

import typer

from sranet.cli._common import OutDirOpt, SeedOpt, cli_errors, progress_enabled

ANATOMIES = ("hip-crop", "pelvis")


@cli_errors
def synth(
    out: OutDirOpt,
    cases: Annotated[int, typer.Option("--cases", "-n", help="Number of cases (hip-crop) or studies (pelvis) to write.")] = 200,
    seed: SeedOpt = 0,
    anatomy: Annotated[str, typer.Option("--anatomy", help="hip-crop: one femoral head per case, with its ROI; pelvis: whole-pelvis studies (both hips, no ROI) and studies without hips.")] = "hip-crop",
    size: Annotated[str | None, typer.Option("--size", help="hip-crop: volume shape D x H x W in voxels, e.g. 96x128x128, or one edge (default 96x128x128).")] = None,
    matrix: Annotated[str | None, typer.Option("--matrix", help="pelvis: 256 (256 x 256, 150-170 slices of 1.5-3 mm) or 512 (512 x 512, 0.6-1.0 mm pixels, 150-400 slices of 1-3 mm); default 256.")] = None,
    negatives: Annotated[float | None, typer.Option("--negatives", help="pelvis: share of studies without hips (abdomen, chest, knees); default 0.15.")] = None,
    stage_mix: Annotated[str, typer.Option("--stage-mix", help="ARCO stage weights 'stage:weight,...' per hip; stage I is invisible on CT (label noise).")] = "0:0.5,1:0.05,2:0.15,3:0.15,4:0.15",
    workers: Annotated[int, typer.Option("--workers", help="Processes generating cases in parallel.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a folder that already holds a manifest.csv.")] = False,
) -> None:
    """Write OUT/manifest.csv, OUT/cases/<id>/slice_*.dcm, OUT/lesions/: CT phantoms of the femoral head by ARCO stage.

    hip-crop: a crop around one femoral head per case, with its ROI in the manifest. pelvis: whole-pelvis studies of
    realistic size in every patient position, some with metal or a hip out of view, plus studies without hips; one
    manifest row per hip in view, no ROI, and OUT/truth.csv with each head's centre, radius and lesion mask.
    """
    from sranet.data.synthetic_dataset import parse_shape, parse_stage_mix
    from sranet.errors import InputError, check_choice

    check_choice("--anatomy", anatomy, ANATOMIES, InputError)
    mix = parse_stage_mix(stage_mix)
    if anatomy == "hip-crop":
        if matrix is not None or negatives is not None:
            raise InputError("--matrix and --negatives apply to --anatomy pelvis only.",
                             hint="Drop them, or pass --anatomy pelvis.")
        from sranet.data.synthetic_dataset import write_dataset

        manifest = write_dataset(out, cases, seed=seed, shape=parse_shape(size or "96x128x128"), stage_mix=mix,
                                 workers=workers, overwrite=overwrite, progress=progress_enabled())
        typer.echo(f"wrote {cases} synthetic cases; manifest {manifest}")
        return
    if size is not None:
        raise InputError("--size applies to --anatomy hip-crop; whole-pelvis studies take --matrix 256 or 512.")
    from sranet.data.synthetic_pelvis_dataset import DEFAULT_NEGATIVES, write_pelvis_dataset
    from sranet.data.synthetic_render import GRID_PRESETS

    preset = check_choice("--matrix", matrix or "256", tuple(GRID_PRESETS), InputError)
    manifest = write_pelvis_dataset(out, cases, seed=seed, preset=preset,
                                    negatives=DEFAULT_NEGATIVES if negatives is None else negatives, stage_mix=mix,
                                    workers=workers, overwrite=overwrite, progress=progress_enabled())
    typer.echo(f"wrote {cases} synthetic pelvis studies; manifest {manifest}, truth {manifest.parent / 'truth.csv'}")
