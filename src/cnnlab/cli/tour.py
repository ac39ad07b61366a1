"""`cnnlab tour`: a short walk through the lecture, computed live."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.rule import Rule

from cnnlab.bench.crossover import CrossoverConfig, run_crossover
from cnnlab.bench.machine import machine_report
from cnnlab.cli.bench import crossover_table
from cnnlab.cli.common import err, out, print_json, user_errors
from cnnlab.cli.explain import render_conv, render_pool
from cnnlab.cli.hw import machine_tables
from cnnlab.cli.train import print_result, result_plots
from cnnlab.cli.zoo import model_zoo, zoo_table
from cnnlab.data import resolve_dataset
from cnnlab.data.download import terminal_progress
from cnnlab.ops import SLIDE_2D, SLIDE_2D_STRIDE2, SLIDE_POOL_AVG, SLIDE_POOL_MAX, SLIDE_RGB
from cnnlab.runtime.validate import check_positive_int
from cnnlab.summary import format_darknet, format_keras, summarize
from cnnlab.train import TrainResult, default_config, train

TOUR_MODEL = "lenet-like"
# The tour's crossover: three widths of the slide's MLP, each timed ~1.5 s and extrapolated to
# the epoch, so the hardware step takes ~30 s on 2 cores (`cnnlab bench crossover` does it all).
TOUR_CROSSOVER = CrossoverConfig(widths=(16, 512, 4096), batch_sizes=(32, 256), max_seconds=1.5)
DEFAULT_DATA = "fashion-mnist"
FALLBACK_DATA = "digits"  # bundled with scikit-learn: needs no download


def pick_dataset(chosen: str | None) -> tuple[str, str | None]:
    """The dataset to train on, and why it is not the one asked for.

    ``--data`` given: that dataset or an error (exit 2). Not given: Fashion-MNIST if it can be
    found or fetched, else the bundled digits, and why.
    """
    preferred = DEFAULT_DATA if chosen is None else chosen
    if preferred == FALLBACK_DATA:
        return preferred, None
    try:
        with terminal_progress() as progress:
            resolve_dataset(preferred, progress=progress)
    except (ValueError, OSError) as error:
        if chosen is not None:
            raise
        return FALLBACK_DATA, f"{error}\nThe tour trains on scikit-learn's bundled digits instead."
    return preferred, None


def train_step(
    data: str, why: str | None, epochs: int | None, json_output: bool
) -> tuple[TrainResult, str]:
    """Train the slide's LeNet-like with its recipe: the training part of the tour."""
    console = err if json_output else out
    if why:
        console.print(f"[yellow]{escape(why)}[/]")
    overrides = {} if epochs is None else {"epochs": epochs}
    config = default_config(TOUR_MODEL, data, **overrides)
    console.print(f"cnnlab train {TOUR_MODEL} --data {data} --epochs {config.epochs}")

    def log(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    return train(config, print_fn=log), data


@user_errors(flags={"epochs": "--epochs", "name": "--data", "data": "--data"})
def tour_command(
    train_model: Annotated[
        bool, typer.Option("--train/--no-train", help="Train the LeNet-like.")
    ] = True,
    hardware: Annotated[
        bool,
        typer.Option("--hardware/--no-hardware", help="End with this machine and a crossover."),
    ] = True,
    data: Annotated[
        str | None,
        typer.Option(
            help="Dataset for the training step (default fashion-mnist, or the bundled digits "
            "if it cannot be found)."
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs of the training step (default: the recipe's).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A walk through the lecture: kernels, pooling, LeNet-like, Darknet19, the zoo, training,
    and the hardware (this machine, and a small CPU-vs-GPU crossover)."""
    if epochs is not None:
        check_positive_int("--epochs", epochs)
    # The dataset is settled before the tour starts: a --data that cannot be had is exit 2.
    data_name, why = pick_dataset(data) if train_model else (None, None)
    lenet, darknet = summarize("lenet-like"), summarize("darknet19")
    conv_examples = (SLIDE_2D, SLIDE_2D_STRIDE2, SLIDE_RGB)
    pools = (SLIDE_POOL_MAX, SLIDE_POOL_AVG)
    if json_output:
        data_used, result, crossover = None, None, None
        if train_model:
            result, data_used = train_step(data_name, why, epochs, json_output=True)
        if hardware:
            crossover = run_crossover(TOUR_CROSSOVER).to_dict()
        print_json(
            {
                "convolution": {e.name: e.explain().to_dict() for e in conv_examples},
                "pooling": {e.name: e.explain().to_dict() for e in pools},
                "lenet-like": lenet.to_dict(),
                "darknet19": darknet.to_dict(),
                "models": model_zoo(),
                "training": None if result is None else {"data": data_used, **result.to_dict()},
                "machine": machine_report().to_dict() if hardware else None,
                "crossover": crossover,
            }
        )
        return
    steps = [
        ("1. A kernel slides over the image (slide 'CNN Kernels')", None),
        ("2. A stride of 2 reduces the dimensionality (Figure 14-4)", None),
        (
            "3. Three colour channels, one kernel channel each, plus a bias ('CNN Kernels in 3D')",
            None,
        ),
    ]
    for (title, _), example in zip(steps, conv_examples, strict=True):
        out.print(Rule(title, align="left"))
        render_conv(example, [], [example.explain()], all_terms=False)
        out.print()
    out.print(Rule("4. Pooling subsamples: max and average ('CNN Pooling')", align="left"))
    for example in pools:
        render_pool(example.explain(), example.title, example.note)
        out.print()
    out.print(Rule("5. The LeNet-like Keras model of the slides: model.summary()", align="left"))
    out.print(format_keras(lenet), markup=False)
    out.print()
    out.print(Rule("6. Darknet19, as Darknet prints it ('YOLO' slides)", align="left"))
    out.print(format_darknet(darknet), markup=False)
    out.print()
    out.print(Rule("7. The model zoo: LeNet to ResNet-152", align="left"))
    out.print(zoo_table(model_zoo()))
    out.print()
    if train_model:
        out.print(Rule("8. Training the LeNet-like, data on the device", align="left"))
        result, _ = train_step(data_name, why, epochs, json_output=False)
        print_result(result, result_plots(result))
        out.print()
    if hardware:
        out.print(
            Rule("9. The hardware: this machine, and when the GPU beats the CPU", align="left")
        )
        for table in machine_tables(machine_report()):
            out.print(table)
        crossover = run_crossover(TOUR_CROSSOVER)
        out.print(crossover_table(crossover))
        for line in [c.message for c in crossover.crossovers] + list(crossover.notes):
            out.print(line)
        out.print()
    out.print(
        "Next: cnnlab data export-images fashion-mnist --out samples/, "
        "cnnlab explain conv --input samples/test-0000-Ankle-boot.png --kernel sobel-x "
        "--out maps.png, "
        "cnnlab summary MODEL --style darknet, cnnlab data list, "
        "cnnlab predict RUN_DIR image.png, cnnlab view RUN_DIR, cnnlab bench crossover, "
        "cnnlab hw catalog, cnnlab --help"
    )
