"""``sranet locate``: find the femoral heads of whole studies and write their boxes as manifest rows to check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import SpacingOpt, cli_errors, parse_spacing


@cli_errors
def locate(
    inputs: Annotated[list[Path] | None, typer.Argument(help="Whole studies: DICOM series folders, DICOM files, NIfTI or .npy volumes.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Boxes CSV to write: manifest rows (case_id, path, side, roi in mm, confidence, qc, and a --manifest row's own columns).")] = Path("boxes.csv"),
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m", help="Manifest CSV: locate its rows without a roi (only the hip a row's side names); rows with a roi are copied.")] = None,
    overview: Annotated[Path | None, typer.Option("--overview", help="Folder for one overview PNG per study (default: <out>_overview next to the CSV).")] = None,
    series: Annotated[str | None, typer.Option("--series", help="SeriesInstanceUID to use where a folder holds several series.")] = None,
    spacing_mm: SpacingOpt = None,
    roi_margin_mm: Annotated[float | None, typer.Option("--roi-margin-mm", help="Margin around the head's bounding cube, mm (default: PreprocessConfig's, 5 mm); use the one the model is prepared with.")] = None,
    include_metal: Annotated[bool, typer.Option("--include-metal", help="Also write heads with metal (prosthesis, screws) near them, flagged metal_near_head in qc.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file (it may hold boxes someone corrected).")] = False,
) -> None:
    """Find both femoral heads in each study; write one manifest row per head to --out and an overview PNG per study.

    Check the boxes on the overviews, correct or delete rows, add labels, then train from them (`sranet prepare
    --manifest OUT`). A side without a femoral head (or with metal near it) gets no row; it is listed here with the
    reason. Exit code 1 if a study could not be read.
    """
    from sranet.config import PreprocessConfig
    from sranet.data.manifest import write_manifest
    from sranet.errors import InputError

    _check_out(out, overwrite)
    cfg = PreprocessConfig() if roi_margin_mm is None else PreprocessConfig(roi_margin_mm=roi_margin_mm)
    spacing = parse_spacing(spacing_mm)
    folder = overview if overview is not None else out.with_name(f"{out.stem}_overview")
    base = out.resolve().parent

    jobs = [(_case_input(p, series, spacing), {"path": _rel(p, base)}) for p in inputs or []]
    rows: list[dict] = []
    if manifest is not None:
        copied, manifest_jobs = _manifest_rows_and_jobs(manifest, base, series, spacing)
        rows.extend(copied)
        jobs.extend(manifest_jobs)
    if not jobs and not rows:
        raise InputError("no inputs given.", hint="Pass study folders / NIfTI / .npy paths, or --manifest CSV.")

    found, missing, failed = _locate_jobs(jobs, cfg, folder, include_metal=include_metal)
    rows.extend(found)
    if rows:
        write_manifest(out, rows)
    typer.echo(f"{len(jobs)} stud{'y' if len(jobs) == 1 else 'ies'} located: {sum(1 for r in rows if r.get('roi'))} "
               f"box(es), {missing} side(s) without one, {failed} not read -> {out if rows else '(no CSV: no box)'}; "
               f"overviews -> {folder}")
    if failed:
        typer.echo(f"Error: {failed} stud{'y' if failed == 1 else 'ies'} could not be read (listed above).", err=True)
        raise typer.Exit(1)


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to replace a boxes CSV (it may hold corrections) unless asked, and a folder in its place."""
    from sranet.errors import InputError

    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; it may hold boxes someone checked or corrected.",
                         hint="Choose another --out, or pass --overwrite.")
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out} is a folder; it names the boxes CSV to write.")


def _case_input(path: Path, series: str | None, spacing, **kwargs):
    """A whole study to locate; ``series`` applies to folders, ``spacing`` to .npy volumes."""
    from sranet.runtime.predictor import CaseInput

    return CaseInput(path, **kwargs, roi_source="auto", series=series if path.is_dir() else None,
                     spacing_mm=spacing if str(path).lower().endswith(".npy") else None)


def _manifest_rows_and_jobs(manifest: Path, base: Path, series: str | None, spacing):
    """The manifest's rows with a roi, copied as they are, and a locate job for each row without one (only the hip
    its side names), each carrying the row's own columns (a study-level row keeps only its split)."""
    from sranet.runtime.manifest import read_manifest

    rows, jobs = [], []
    for c in read_manifest(manifest):
        own = {k: v for k, v in (("label", c.label), ("stage", c.stage), ("split", c.split),
                                 ("lesion_mask", c.lesion_mask and _rel(c.lesion_mask, base)),
                                 ("lesion_box", c.lesion_box)) if v is not None}
        if not c.side:  # a study-level label cannot be told apart per hip
            own = {k: v for k, v in own.items() if k == "split"}
        if c.roi:
            rows.append({"case_id": c.case_id, "path": _rel(c.path, base), "roi": c.roi, "side": c.side,
                         **own, "confidence": c.confidence, "qc": ";".join(c.qc)})
            continue
        jobs.append((_case_input(c.path, series, spacing, case_id=c.case_id, side=c.side),
                     {"path": _rel(c.path, base), **own}))
    return rows, jobs


def _locate_jobs(jobs, cfg, folder: Path, *, include_metal: bool) -> tuple[list[dict], int, int]:
    """Locate each job's study, write its overview PNG; the rows found, sides without a box, studies not read.
    An unreadable study is reported on stderr and the others go on."""
    from sranet.runtime.heatmap import write_overview_png
    from sranet.runtime.study import locate_rows, locate_study

    rows: list[dict] = []
    failed, missing = 0, 0
    for case, row_base in jobs:
        try:
            located = locate_study(case.source, series=case.series, spacing_mm=case.spacing_mm, preprocess=cfg)
        except Exception as exc:  # noqa: BLE001 - one unreadable study is reported; the others go on
            failed += 1
            typer.echo(f"  {case.key}: not read: {type(exc).__name__}: {exc}", err=True)
            continue
        found, notes = locate_rows(case, located, include_metal=include_metal, base=row_base)
        rows.extend(found)
        for side, why in notes.items():
            missing += 1
            typer.echo(f"  {case.key} {side}: {why}", err=True)
        write_overview_png(located.volume, located.localisation, folder / f"{case.key}.png", title=case.key,
                           refused=tuple(notes))
    return rows, missing, failed


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to the CSV's folder when it lies inside it (read_manifest resolves it back), else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return os.fspath(p)
