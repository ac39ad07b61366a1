"""`cnnlab quest baselines`: classical models next to CNNs on the same split, as a leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.common import (
    QuietOption,
    WholeTable,
    err,
    out,
    output_errors,
    print_json,
    user_errors,
)
from cnnlab.quest.baselines import (
    DEFAULT_MODELS,
    SLIDE_BEST,
    BaselinesConfig,
    BaselinesResult,
    run_baselines,
)
from cnnlab.runtime.files import RUNS_FOLDER


def slide_best_caption(data_name: str) -> str:
    """The slide's best score is an MNIST score: a comparison only on MNIST, else named so."""
    if data_name == SLIDE_BEST["data"]:
        return f"For comparison, {SLIDE_BEST['note']}."
    return (
        f"The slide's best semester score, KNN {SLIDE_BEST['score']}, is MNIST's: it does not "
        f"compare with scores on {data_name}."
    )


def leaderboard_table(result: BaselinesResult) -> WholeTable:
    """The board, best first: accuracy, training and prediction seconds, parameters.

    The notes are long (what a CNN was trained on, convergence): :func:`board_notes`.
    """
    data = result.data
    table = WholeTable(
        title=(
            f"baselines on {data['name']}: {data['train_count']:,} training and "
            f"{data['test_count']:,} test images"
        ),
        title_justify="left",
        caption=slide_best_caption(data["name"]),
        caption_justify="left",
    )
    for header in ("#", "model", "kind", "accuracy", "train s", "predict s", "params"):
        left = header in ("model", "kind")
        table.add_column(header, justify="left" if left else "right", no_wrap=True)
    for rank, row in enumerate(result.rows, start=1):
        table.add_row(
            str(rank),
            row.name,
            row.kind,
            f"{row.accuracy:.4f}",
            f"{row.train_seconds:.2f}",
            f"{row.predict_seconds:.2f}",
            "-" if row.parameters is None else f"{row.parameters:,}",
        )
    return table


def board_notes(result: BaselinesResult) -> list[str]:
    """One line per model, in the board's order: how it was built and trained."""
    return [f"{row.name}: {row.notes}" for row in result.rows]


@user_errors
def baselines_command(
    data: Annotated[str, typer.Option("--data", help="Dataset name (see `cnnlab data list`).")],
    models: Annotated[
        str,
        typer.Option(
            help="Comma-separated: knn, random-forest, svm, logistic, sklearn-mlp, or zoo models."
        ),
    ] = ",".join(DEFAULT_MODELS),
    limit_train: Annotated[
        int | None,
        typer.Option("--limit-train", help="Train on a seeded, stratified subsample of N images."),
    ] = None,
    limit_test: Annotated[
        int | None,
        typer.Option("--limit-test", help="Score on a seeded, stratified subsample of N images."),
    ] = None,
    cnn_epochs: Annotated[
        int | None, typer.Option("--cnn-epochs", help="Epochs for the CNNs (default: recipe).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: subsamples, forests, MLPs, CNNs.")] = 0,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch, BLAS and scikit-learn.")
    ] = None,
    device: Annotated[str, typer.Option(help="Device for the CNNs: auto, cpu, cuda...")] = "auto",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default runs/baselines-YYYYmmdd-HHMMSS)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder that holds the dataset's files.")
    ] = None,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train classical models and CNNs on --data NAME and rank them by test accuracy."""
    config = BaselinesConfig(
        data=data,
        models=tuple(name.strip() for name in models.split(",") if name.strip()),
        limit_train=limit_train,
        limit_test=limit_test,
        seed=seed,
        data_dir=None if data_dir is None else str(data_dir),
        threads=threads,
        device=device,
        out=None if out_dir is None else str(out_dir),
        cnn_overrides={} if cnn_epochs is None else {"epochs": cnn_epochs},
    )
    # Progress and estimates go to stderr, so that --json keeps stdout for the JSON.
    folder = Path(RUNS_FOLDER) if out_dir is None else out_dir
    with output_errors("--out", folder, given=out_dir is not None):
        result = run_baselines(
            config, print_fn=None if quiet else lambda text: err.print(text, markup=False)
        )
    if json_output:
        print_json(result.to_dict())
        return
    out.print(leaderboard_table(result))
    for line in board_notes(result):
        out.print(line, markup=False)
    out.print(f"wrote {result.files['json']} and {result.files['png']}", markup=False)
