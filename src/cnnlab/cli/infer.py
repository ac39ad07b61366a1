"""`cnnlab bench infer`: one model on every runtime, timed side by side on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.bench import parse_ints
from cnnlab.cli.common import (
    QuietOption,
    WholeTable,
    err,
    out,
    output_errors,
    print_json,
    user_errors,
)
from cnnlab.deploy.infer import InferBenchConfig, InferBenchResult, bench_infer

FLAGS = {
    "backends": "--backends",
    "batches": "--batch",
    "deadline_ms": "--deadline-ms",
    "eval_images": "--eval-images",
    "budget_seconds": "--budget",
    "threads": "--threads",
    "out": "--out",
}


@user_errors(flags=FLAGS)
def infer_command(
    source: Annotated[str, typer.Argument(help="A run folder, a checkpoint, or a zoo model name.")],
    backends: Annotated[
        str, typer.Option(help="Comma-separated: torch,onnxruntime,openvino,tflite.")
    ] = "torch,onnxruntime",
    int8: Annotated[
        bool, typer.Option("--int8", help="Also measure each runtime's int8 model.")
    ] = False,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,64",
    data: Annotated[
        str | None,
        typer.Option(help="Dataset for accuracy (default: the run's own; none for a zoo model)."),
    ] = None,
    eval_images: Annotated[int, typer.Option(help="Test images behind each accuracy.")] = 1000,
    deadline_ms: Annotated[
        float, typer.Option("--deadline-ms", help="Real-time deadline per batch (33 = 30 FPS).")
    ] = 1000 / 30,
    threads: Annotated[
        int | None, typer.Option(help="Threads for every backend (default: torch's).")
    ] = None,
    budget: Annotated[float, typer.Option(help="Seconds of timed runs per measurement.")] = 2.0,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for infer.json, infer.png and the exports."),
    ] = None,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Export to each runtime and measure inference: latency, throughput, size, accuracy."""
    config = InferBenchConfig(
        source=source,
        backends=tuple(part.strip() for part in backends.split(",") if part.strip()),
        int8=int8,
        batches=parse_ints(batch, "--batch") or (),
        data=data,
        eval_images=eval_images,
        deadline_ms=deadline_ms,
        threads=threads,
        budget_seconds=budget,
        out=None if out_dir is None else str(out_dir),
    )
    with output_errors("--out", out_dir or Path("runs"), given=out_dir is not None):
        result = bench_infer(config, print_fn=None if json_output or quiet else _progress)
    if json_output:
        print_json(result.to_dict())
        return
    out.print(infer_table(result))
    if result.context.get("busy_note"):
        out.print(f"note: {result.context['busy_note']}", markup=False)
    note = next((row.energy_note for row in result.rows if row.energy_note), None)
    if note:
        out.print(f"energy: {note}", markup=False)
    for kind, path in result.files.items():
        out.print(f"{kind}: {path}", markup=False)


def infer_table(result: InferBenchResult) -> WholeTable:
    """One row per backend, precision and batch."""
    deadline = result.config.deadline_ms
    table = WholeTable(
        title=f"{result.model}: inference on {result.context['cpu']}, "
        f"{result.context['threads']} thread(s); accuracy on {result.data}",
        title_justify="left",
    )
    headers = ["backend", "precision", "batch", "p50 ms", "p99 ms", "images/s", "size"]
    headers += ["accuracy", "change", "speed-up", f"p99 <= {deadline:.3g} ms"]
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < 2 else "right", no_wrap=True)
    for row in result.rows:
        size = "-" if row.file_bytes is None else f"{row.file_bytes / 1e6:.2f} MB"
        accuracy = "-" if row.accuracy is None else f"{100 * row.accuracy:.2f}%"
        change = "-" if row.accuracy_change is None else f"{100 * row.accuracy_change:+.2f}"
        table.add_row(
            row.backend,
            row.precision,
            str(row.batch),
            f"{row.p50_ms:.3f}",
            f"{row.p99_ms:.3f}",
            f"{row.images_per_second:,.0f}",
            size,
            accuracy,
            change,
            f"{row.speedup:.2f}x",
            "real-time" if row.meets_deadline else "misses",
        )
    return table


def _progress(message: str) -> None:
    err.print(message, markup=False)
