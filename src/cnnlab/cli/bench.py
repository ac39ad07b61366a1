"""`cnnlab bench`: what the hardware delivers: measured ceilings and the CPU-vs-GPU crossover."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.bench.ceilings import check_ceilings_sizes, measure_ceilings, write_ceilings
from cnnlab.bench.crossover import CrossoverConfig, run_crossover
from cnnlab.bench.crossover_plot import default_out_dir, write_crossover
from cnnlab.bench.crossover_result import CrossoverPoint, CrossoverResult
from cnnlab.bench.datasheet import compare_to_datasheet
from cnnlab.bench.memory import check_fits
from cnnlab.cli.common import (
    QuietOption,
    WholeTable,
    err,
    out,
    output_errors,
    print_json,
    user_errors,
)
from cnnlab.runtime.contention import busy_note
from cnnlab.runtime.devices import resolve_device
from cnnlab.runtime.validate import check_positive_int

bench_app = typer.Typer(
    help="Measure the hardware: peak matmul FLOP/s and bandwidth, and the CPU-vs-GPU crossover.",
    no_args_is_help=True,
)


def parse_ints(text: str | None, argument: str) -> tuple[int, ...] | None:
    """``"16,64,256"`` to ``(16, 64, 256)``; the library checks that they are positive."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"{argument} expects integers separated by commas, like 16,64,256. Received: {text!r}"
        ) from None


def _table(title: str, headers: list[str], rows: list[tuple[list[str], bool]]) -> WholeTable:
    """A table whose columns never wrap (wider than the terminal if need be): the first column
    left-aligned, the others right; each row is (cells, whether a section ends after it)."""
    table = WholeTable(title=title, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
    for cells, end_section in rows:
        table.add_row(*cells, end_section=end_section)
    return table


def _si(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


@user_errors(flags={"size": "--size", "repeats": "--repeats", "budget_seconds": "--budget"})
def ceilings_command(
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write ceilings-<device>.json into this folder."),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(help="Square matmul size (default 2048/4096 on a CPU, 8192 on a GPU)."),
    ] = None,
    buffer_mib: Annotated[
        int | None,
        typer.Option("--buffer-mib", help="Copy buffer in MiB (default: well above the cache)."),
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed repeats per measurement (at most).")] = 10,
    budget: Annotated[
        float, typer.Option(help="Seconds of timed repeats per measurement (at least 3 run).")
    ] = 2.0,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Measured peaks: matmul FLOP/s per dtype and copy bandwidth, against the datasheet."""
    buffer_bytes = None
    if buffer_mib is not None:
        check_positive_int("--buffer-mib", buffer_mib)
        buffer_bytes = buffer_mib << 20
        check_fits("--buffer-mib", buffer_mib, 2 * buffer_bytes, resolve_device(device))
    check_ceilings_sizes(resolve_device(device), size, buffer_bytes)  # before anything is printed
    if not json_output and not quiet:
        err.print("measuring matmul rates and copy bandwidth ...")
    ceilings = measure_ceilings(
        device,
        size=size,
        buffer_bytes=buffer_bytes,
        repeats=repeats,
        budget_seconds=budget,
    )
    rows = compare_to_datasheet(ceilings)
    written = None
    if out_dir is not None:
        with output_errors("--out", out_dir):
            written = write_ceilings(ceilings, out_dir)
    if json_output:
        data = ceilings.to_dict()
        data["datasheet"] = [row.to_dict() for row in rows]
        data["file"] = None if written is None else str(written)
        print_json(data)
        return
    cells = []
    for row in rows:
        if row.name.startswith("matmul"):
            rate = ceilings.matmul[row.name.split()[1]]
            size_text, seconds, count = f"{rate.size}x{rate.size}", rate.seconds, rate.repeats
        else:
            copy = ceilings.copy
            size_text, seconds, count = f"{copy.buffer_bytes >> 20} MiB", copy.seconds, copy.repeats
        tf32_off = row.name == "matmul fp32" and "tf32" in ceilings.matmul
        cells.append(
            (
                [
                    row.name + (" (TF32 off)" if tf32_off else ""),
                    size_text,
                    f"{seconds * 1e3:.3g} ms",
                    str(count),
                    f"{row.measured:.4g} {row.unit}",
                    "no datasheet figure"
                    if row.datasheet is None
                    else f"{row.datasheet:g} {row.unit}",
                    "-" if row.percent is None else f"{row.percent:.0f} %",
                ],
                False,
            )
        )
    headers = ["measure", "size", "median", "repeats", "measured", "datasheet", "% of peak"]
    table = _table(f"Ceilings of {ceilings.device} ({ceilings.device_name})", headers, cells)
    out.print(table)
    context = ceilings.context
    out.print(
        f"torch {context['torch_version']}, {context['threads']} threads, "
        f"{context['wall_seconds']:.1f} s; median of repeats, after a warm-up call"
    )
    busy = busy_note(context["others_cpu_share"]) if ceilings.device == "cpu" else None
    if busy is not None:
        out.print(f"note: {busy}")
    if written is not None:
        out.print(f"written: {written}", markup=False)


@user_errors(
    flags={
        "widths": "--widths",
        "max_exp": "--max-exp",
        "min_exp": "--min-exp",
        "samples": "--samples",
    }
)
def crossover_command(
    min_exp: Annotated[
        int | None, typer.Option("--min-exp", help="Smallest width 2**i (default i=4).")
    ] = None,
    max_exp: Annotated[
        int | None, typer.Option("--max-exp", help="Largest width 2**i (default i=13).")
    ] = None,
    widths: Annotated[
        str | None, typer.Option(help="Widths instead of a range, e.g. 16,64,256.")
    ] = None,
    batch_sizes: Annotated[
        str | None,
        typer.Option("--batch-sizes", help="Default 32,256 (MLP) or 8,32,128,512 (--model)."),
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option("--devices", "--device", help="e.g. cpu,cuda (default: all available)."),
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option("--max-seconds", help="Time each point this long; extrapolate the epoch."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Sweep the batch size of this zoo model instead of the MLP's width."),
    ] = None,
    data: Annotated[
        str, typer.Option(help="auto (mnist, else fashion-mnist, else synthetic), mnist, ...")
    ] = "auto",
    samples: Annotated[int, typer.Option(help="Samples per epoch.")] = 60_000,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for crossover.json and .png (default runs/crossover-DATE-TIME)."
        ),
    ] = None,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """The lecture's experiment: when is the GPU faster than the CPU for a small MLP?

    Without --max-seconds every point trains a whole epoch: the widest points take minutes.
    """
    parsed_widths = parse_ints(widths, "--widths")
    if parsed_widths is not None and (min_exp is not None or max_exp is not None):
        raise ValueError(
            "--widths replaces --min-exp/--max-exp: give one or the other. "
            f"Received: --widths {widths} with --min-exp {min_exp}, --max-exp {max_exp}"
        )
    exponents = {"min_exp": min_exp, "max_exp": max_exp}
    config = CrossoverConfig(
        **{key: value for key, value in exponents.items() if value is not None},
        widths=parsed_widths,
        batch_sizes=parse_ints(batch_sizes, "--batch-sizes"),
        devices=None if devices is None else tuple(d.strip() for d in devices.split(",")),
        model=model,
        data=data,
        samples=samples,
        max_seconds=max_seconds,
    )
    folder = out_dir if out_dir is not None else default_out_dir()
    result = run_crossover(config, progress=None if json_output or quiet else _print_point)
    with output_errors("--out", folder, given=out_dir is not None):
        files = write_crossover(result, folder)
    if json_output:
        print_json({**result.to_dict(), "files": {key: str(path) for key, path in files.items()}})
        return
    out.print(crossover_table(result))
    for crossover in result.crossovers:
        out.print(crossover.message)
    for note in result.notes:
        out.print(note)
    out.print(f"written: {files['json']}, {files['png']}", markup=False)


def _print_point(point: CrossoverPoint) -> None:
    where = "" if point.width is None else f" n={point.width}"
    err.print(f"{point.device} batch {point.batch_size}{where}: {point.describe_seconds()}")


def crossover_table(result: CrossoverResult) -> WholeTable:
    """One row per (batch size, width), or per batch size for a zoo model; a column per device."""
    accelerators = [d for d in result.devices if d != "cpu"]
    by_width = result.config.model is None
    title = (
        f"One epoch of {result.config.samples:,} samples: "
        + ("784-n-n-10 MLP" if by_width else result.model)
        + f" (data: {result.data['name']})"
    )
    cpu = "cpu" in result.devices
    headers = ["batch", *(["n"] if by_width else []), "params", "FLOPs/sample"]
    headers += [f"{device} s/epoch" for device in result.devices]
    headers += [f"cpu/{device}" for device in accelerators if cpu]
    headers += [f"{device} FLOP/s" for device in result.devices]
    headers += ["crossover"] if accelerators and cpu else []
    marks = {(c.batch_size, c.at): c.accelerator for c in result.crossovers if c.at is not None}
    rows = []
    for batch_size, x in sorted({(p.batch_size, p.x) for p in result.points}):
        width = x if by_width else None
        points = {d: result.point(d, batch_size, width) for d in result.devices}
        first = next(iter(points.values()))
        cells = [str(batch_size), *([str(x)] if by_width else [])]
        cells += [f"{first.parameters:,}", _si(first.flops_per_sample, "")]
        cells += [points[d].describe_seconds() for d in result.devices]
        cells += [f"{points['cpu'].seconds / points[d].seconds:.2f}" for d in accelerators if cpu]
        cells += [_si(points[d].achieved_flops_per_second, "FLOP/s") for d in result.devices]
        if accelerators and cpu:
            mark = marks.get((batch_size if by_width else None, x))
            cells.append(f"<- {mark} faster from here" if mark else "")
        rows.append((cells, by_width and x == max(result.config.sweep)))
    return _table(title, headers, rows)


bench_app.command("ceilings")(ceilings_command)
bench_app.command("crossover")(crossover_command)
