"""The ``sranet`` command: one Typer app, one module per command. Importing this stays light (no torch)."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="sranet",
    help="SRANet for femoral head necrosis on CT: synthesise, prepare, train, evaluate, export, predict, benchmark, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# each command is the function of the same name in sranet.cli.<name>, whose module imports only typer and light code
COMMANDS = ("synth", "locate", "prepare", "train", "evaluate", "export", "predict", "benchmark", "demo", "serve")

for _name in COMMANDS:
    app.command(name=_name)(getattr(importlib.import_module(f"sranet.cli.{_name}"), _name))


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from sranet import __version__

        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
