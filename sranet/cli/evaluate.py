"""``sranet evaluate``: metrics, ROC curve and attention overlays of a checkpoint on one split of a cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import CacheDirOpt, DeviceOpt, OutDirOpt, cli_errors


@cli_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint written by `sranet train` (best.pt or last.pt).")],
    cache: CacheDirOpt,
    out: OutDirOpt,
    split: Annotated[str, typer.Option("--split", help="Which split of the cache to score.")] = "test",
    overlays: Annotated[int, typer.Option("--overlays", help="How many attention-overlay PNGs to draw.")] = 4,
    device: DeviceOpt = "cpu",
) -> None:
    """Write OUT/metrics.json, OUT/predictions.csv, OUT/roc.png and OUT/attention/*.png."""
    from sranet.train.evaluate import evaluate as run_evaluation

    m = run_evaluation(checkpoint, cache, split, out, device=device, overlays=overlays)

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    loc = m["localisation"]
    typer.echo(f"{split}: n={m['n']}  AUC {f(m['auc'])}  sensitivity {f(m['sensitivity'])}  "
               f"specificity {f(m['specificity'])}  accuracy {f(m['accuracy'])}  at threshold {m['threshold']:.3f}")
    if loc["n_cases"]:
        typer.echo(f"localisation on {loc['n_cases']} lesion cases: top patch in lesion {f(loc['top_patch_hit_rate'])}, "
                   f"attention mass in lesion {f(loc['lesion_attention_mass'])} (chance {f(loc['chance_level'])})")
    typer.echo(f"wrote {Path(out) / 'metrics.json'}, roc.png, attention/")
