"""`cnnlab darknet table|classify`: Darknet's model files, printed and run as Darknet does."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.common import out, print_json, print_warning, user_errors
from cnnlab.darknet import build_network, format_table, load_weights, plan_network, table_data
from cnnlab.darknet.classify import classify, read_names

darknet_app = typer.Typer(
    help="Darknet model files (.cfg, .weights): layer tables and classification like Darknet's.",
    no_args_is_help=True,
)


class TableLayout(str, Enum):
    lecture = "lecture"
    pjreddie = "pjreddie"


@darknet_app.command("table")
@user_errors
def table_command(
    cfg: Annotated[Path, typer.Argument(help="A Darknet .cfg file.")],
    style: Annotated[
        TableLayout,
        typer.Option(
            help="lecture: the lecture's layout, as `cnnlab summary --style darknet`; "
            "pjreddie: byte for byte what Debian's darknet binary prints while loading."
        ),
    ] = TableLayout.lecture,
    height: Annotated[int | None, typer.Option(help="Input height instead of the cfg's.")] = None,
    width: Annotated[int | None, typer.Option(help="Input width instead of the cfg's.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Darknet's layer table of CFG: shapes, filters and BFLOPs per layer."""
    plan = plan_network(cfg, height=height, width=width)
    if json_output:
        print_json(table_data(plan))
        return
    out.print(format_table(plan, style.value), markup=False)


@darknet_app.command("classify")
@user_errors
def classify_command(
    cfg: Annotated[Path, typer.Argument(help="A Darknet classifier .cfg file.")],
    weights: Annotated[Path, typer.Argument(help="Its .weights file.")],
    images: Annotated[list[Path], typer.Argument(help="One or more image files.")],
    names: Annotated[
        Path, typer.Option(help="Class names, one per line (e.g. data/imagenet.shortnames.list).")
    ],
    top: Annotated[int, typer.Option(help="How many classes to print per image.")] = 5,
    table: Annotated[
        bool, typer.Option(help="Print the layer table first, as Darknet does while loading.")
    ] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify images as `darknet classifier predict` does: letterboxed RGB in [0, 1], top k.

    The "Predicted in S seconds." line gives wall-clock time. pjreddie's Darknet prints
    process CPU time there (clock()), which counts every thread's time; --json gives both
    (wall_seconds, cpu_seconds).
    """
    model = build_network(cfg)
    info = load_weights(model, weights)
    if not info.complete:
        print_warning(info.describe(), UserWarning, "", 0)
    class_names = read_names(names)
    model.optimize_for_inference()
    results = classify(model, [str(image) for image in images], class_names, top=top)
    if json_output:
        print_json(
            [
                {
                    "image": r.image,
                    "top": [{"probability": p, "name": n} for p, n in r.top],
                    "wall_seconds": r.wall_seconds,
                    "cpu_seconds": r.cpu_seconds,
                }
                for r in results
            ]
        )
        return
    if table:
        out.print(format_table(model.plan), markup=False)
        out.print(f"Loading weights from {weights}...Done!", markup=False)
    for result in results:
        out.print("\n".join(result.lines()), markup=False)
