"""The ``cnnlab`` command: parses arguments, calls the Python API, prints the result.

One module per command group (``explain``, ``zoo``, ``data``, ``train``, ``predict``, ``hw``,
``bench``, ``bench_run``, ``quest``, ``quest_baselines``, ``tour``), all thin. Every command takes
``--json``. Bad input (a ``ValueError`` or ``FileNotFoundError`` from the library) is printed as
one line on stderr, without a traceback, and exits with status 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

import cnnlab
from cnnlab.cli.bench import bench_app
from cnnlab.cli.bench_run import bench_run_command
from cnnlab.cli.common import out
from cnnlab.cli.darknet import darknet_app
from cnnlab.cli.data import data_app
from cnnlab.cli.explain import explain_app
from cnnlab.cli.export import export_command
from cnnlab.cli.hw import hw_app
from cnnlab.cli.infer import infer_command
from cnnlab.cli.predict import evaluate_command, predict_command
from cnnlab.cli.quest import quest_app
from cnnlab.cli.quest_baselines import baselines_command
from cnnlab.cli.tour import tour_command
from cnnlab.cli.train import train_command
from cnnlab.cli.zoo import models_command, summary_command

app = typer.Typer(
    name="cnnlab",
    help="A workbench for convolutional neural networks and the hardware that runs them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(explain_app, name="explain")
app.command("models")(models_command)
app.command("summary")(summary_command)
app.add_typer(data_app, name="data")
app.add_typer(darknet_app, name="darknet")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("predict")(predict_command)
app.command("export")(export_command)
app.add_typer(hw_app, name="hw")
bench_app.command("run")(bench_run_command)
bench_app.command("infer")(infer_command)
app.add_typer(bench_app, name="bench")
quest_app.command("baselines")(baselines_command)
app.add_typer(quest_app, name="quest")
app.command("tour")(tour_command)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"cnnlab {cnnlab.__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """A workbench for convolutional neural networks and the hardware that runs them."""


def main() -> None:
    app()
