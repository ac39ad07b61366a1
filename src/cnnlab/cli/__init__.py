"""The ``cnnlab`` command: parses arguments, calls the Python API, prints the result.

One module per command group (``explain``, ``zoo``, ``data``, ``train``, ``predict``, ``hw``,
``bench``, ``bench_run``, ``quest``, ``quest_baselines``, ``tour``), all thin. Every command takes
``--json`` but ``quest serve``. Bad input (a ``ValueError`` or ``FileNotFoundError`` from the
library) is printed as one line on stderr, without a traceback, and exits with status 2; under
``--json`` it is also printed on stdout as ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from typer.exceptions import Abort

import cnnlab
from cnnlab.cli.bench import bench_app
from cnnlab.cli.bench_run import bench_run_command
from cnnlab.cli.common import err, out
from cnnlab.cli.darknet import darknet_app
from cnnlab.cli.data import data_app
from cnnlab.cli.data_scenes import scenes_command
from cnnlab.cli.detect import detect_command
from cnnlab.cli.explain import explain_app
from cnnlab.cli.export import export_command
from cnnlab.cli.hw import hw_app
from cnnlab.cli.infer import infer_command
from cnnlab.cli.predict import evaluate_command, predict_command
from cnnlab.cli.quest import quest_app, team_app
from cnnlab.cli.quest_baselines import baselines_command
from cnnlab.cli.quest_models import export_test_command
from cnnlab.cli.quest_teams import (
    submissions_command,
    team_list_command,
    team_remove_command,
    team_rotate_token_command,
)
from cnnlab.cli.tour import tour_command
from cnnlab.cli.train import train_command
from cnnlab.cli.view import view_command
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
data_app.command("scenes")(scenes_command)
app.add_typer(data_app, name="data")
app.add_typer(darknet_app, name="darknet")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("predict")(predict_command)
app.command("detect")(detect_command)
app.command("export")(export_command)
app.add_typer(hw_app, name="hw")
bench_app.command("run")(bench_run_command)
bench_app.command("infer")(infer_command)
app.add_typer(bench_app, name="bench")
quest_app.command("baselines")(baselines_command)
quest_app.command("export-test")(export_test_command)
quest_app.command("submissions")(submissions_command)
team_app.command("list")(team_list_command)
team_app.command("remove")(team_remove_command)
team_app.command("rotate-token")(team_rotate_token_command)
app.add_typer(quest_app, name="quest")
app.command("tour")(tour_command)
app.command("view")(view_command)


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


def main(argv: list[str] | None = None) -> None:
    """Run the command line; a usage error (an unknown option, a value of the wrong type) is
    one line on stderr, as every other bad input is, with exit status 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        status = app(args=args, prog_name="cnnlab", standalone_mode=False)
    except Exception as error:
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
            raise
        if type(error).__name__ == "NoArgsIsHelpError":  # a group called alone: its help
            out.print(error.format_message(), markup=False, highlight=False)
            raise SystemExit(error.exit_code) from None
        message = " ".join(error.format_message().split())  # click's exceptions, as data
        context = getattr(error, "ctx", None)
        where = f"{context.command_path}: " if context is not None else ""
        received = _received(getattr(error, "param", None), args)
        err.print(f"error: {where}{message}{received}", markup=False, highlight=False)
        if "--json" in args:  # as every other error under --json: also JSON on stdout
            print(json.dumps({"error": f"{where}{message}{received}"}))
        raise SystemExit(error.exit_code) from None
    except Abort:
        err.print("interrupted", markup=False, highlight=False)
        raise SystemExit(130) from None
    raise SystemExit(status if isinstance(status, int) else 0)


def _received(param: object, args: list[str]) -> str:
    """`` Received: --batch-size 0`` from the command line, for the option that was refused."""
    for name in getattr(param, "opts", None) or ():
        for index, arg in enumerate(args):
            if arg == name and index + 1 < len(args):
                return f". Received: {name} {args[index + 1]}"
            if arg.startswith(f"{name}="):
                return f". Received: {arg}"
    return ""
