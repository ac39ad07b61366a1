"""`cnnlab darknet table|classify|import|export`: Darknet's model files, printed, run, converted."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.common import out, print_json, print_warning, user_errors
from cnnlab.darknet import build_network, format_table, load_weights, plan_network, table_data
from cnnlab.darknet.classify import classify, read_names
from cnnlab.darknet.convert import export_darknet, import_darknet

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


@darknet_app.command("import")
@user_errors
def import_command(
    cfg: Annotated[Path, typer.Argument(help="A Darknet classifier .cfg file.")],
    weights: Annotated[Path, typer.Argument(help="Its .weights file.")],
    run_dir: Annotated[
        Path | None,
        typer.Option("--out", help="The run folder to write (default: runs/darknetcfg-...)."),
    ] = None,
    names: Annotated[
        Path | None, typer.Option(help="Class names, one per line (the first K for K outputs).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make a cnnlab run folder of a Darknet classifier, for predict, evaluate and cnnlab.load.

    The model is the zoo model `darknetcfg` built from the cfg's text (kept in the checkpoint),
    fed RGB in [0, 1] as Darknet does.
    """
    result = import_darknet(cfg, weights, run_dir, names=names)
    if json_output:
        print_json(
            {
                "run_dir": str(result.run_dir),
                "checkpoint": str(result.checkpoint),
                "input_shape": list(result.input_shape),
                "classes": len(result.classes),
                "loaded_layers": len(result.weights.loaded_layers),
                "weighted_layers": result.weights.weighted_layers,
            }
        )
        return
    if not result.weights.complete:
        print_warning(result.weights.describe(), UserWarning, "", 0)
    c, h, w = result.input_shape
    out.print(
        f"Imported {cfg} ({c}x{h}x{w}, {len(result.classes)} classes) into {result.checkpoint}",
        markup=False,
    )
    out.print(f"Try: cnnlab predict {result.run_dir} IMAGE", markup=False)


@darknet_app.command("export")
@user_errors
def export_command(
    source: Annotated[
        str, typer.Argument(help="A run folder, a checkpoint file, or a zoo model name.")
    ],
    folder: Annotated[
        Path,
        typer.Option(
            "--out", help="The folder for model.cfg, model.weights, model.names (, model.data)."
        ),
    ],
    seed: Annotated[int, typer.Option(help="Seed of a zoo model's initial weights.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write a cnnlab model as Darknet's model.cfg + model.weights (+ model.names).

    Works for chains of layers Darknet has (lenet-like, lenet5, mlp, alexnet, vgg*, darknet19),
    for imported Darknet models and for the zoo's detectors (yolo-scenes, yolov2-tiny,
    yolov3-tiny; with model.data for `darknet detector test`); resnet*, googlenet and
    lenet5-1998 are refused with the reason. A run trained on normalised input gets a first
    1x1 convolution that normalises as the run did (Darknet feeds RGB in [0, 1]). The files are
    read back and compared with the model (max logit or head map difference).
    """
    result = export_darknet(source, folder, seed=seed)
    files = [result.cfg, result.weights, result.names, result.data]
    files = [file for file in files if file is not None]
    if json_output:
        print_json(
            {
                "model": result.model,
                "files": [str(f) for f in files],
                "max_difference": result.max_difference,
                "compared": result.compared,
                "normalization_layer": result.normalized,
            }
        )
        return
    for file in files:
        out.print(f"Wrote {file}", markup=False)
    if result.normalized:
        out.print("Layer 0 normalises the input as the run did: (x - mean) / std", markup=False)
    out.print(
        f"Read back: max {result.compared} difference to {result.model} "
        f"{result.max_difference:.2e}",
        markup=False,
    )
    if result.data is not None:
        out.print(
            f"Try: darknet detector test {result.data} {result.cfg} {result.weights} IMAGE",
            markup=False,
        )
