"""`cnnlab explain conv|pool`: the lecture's arithmetic, one output cell at a time."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.columns import Columns
from rich.console import Group
from rich.markup import escape

from cnnlab.cli.common import (
    matrix_table,
    out,
    output_errors,
    parse_cell,
    print_json,
    user_errors,
)
from cnnlab.ops import (
    KERNEL_DESCRIPTIONS,
    KERNELS,
    SLIDE_2D,
    SLIDE_POOL_AVG,
    SLIDE_POOL_MAX,
    SLIDE_RGB,
    ConvExample,
    ConvTrace,
    PoolTrace,
    explain_conv,
    explain_pool,
    feature_maps_figure,
    load_input,
    parse_kernel,
)

# Maps larger than this are summarised (shape and range) instead of printed cell by cell.
MAX_PRINTED_SIDE = 16

explain_app = typer.Typer(
    help="The lecture's arithmetic, step by step: convolution and pooling.", no_args_is_help=True
)


class ConvExampleName(str, Enum):
    two_d = "2d"
    rgb = "rgb"


class PoolModeName(str, Enum):
    max = "max"
    avg = "avg"


def _kernel_label(text: str) -> str:
    return text.lower() if text.lower() in KERNELS else text


def conv_request(
    example: ConvExampleName,
    input_file: Path | None,
    kernels: list[str] | None,
    bias: float | None,
    stride: int | None,
    padding: int | None,
) -> tuple[ConvExample, dict[str, np.ndarray]]:
    """The convolution to explain: a slide example, or the user's input and kernels."""
    if bias is not None and not np.isfinite(bias):
        raise ValueError(f"--bias expects a finite number, like 0.5. Received: --bias {bias}")
    base = SLIDE_RGB if example is ConvExampleName.rgb else SLIDE_2D
    if input_file is None and not kernels:
        chosen = {"slide kernel": base.w[0, 0]} if base.w.shape[1] == 1 else {}
        x = base.x
    else:
        if example is ConvExampleName.rgb:
            raise ValueError(
                "--example rgb uses the slide's own input and 3-channel kernel; it cannot be "
                f"combined with --input or --kernel. Received: --input={input_file}, "
                f"--kernel={kernels}"
            )
        x = load_input(input_file) if input_file is not None else base.x[0]
        texts = kernels or ["sharpen"]
        chosen = {_kernel_label(t): parse_kernel(t) for t in texts}
        if len(chosen) < len(texts):
            raise ValueError(f"--kernel values must differ. Received: --kernel={texts}")
        x = x[None] if x.ndim == 2 else x  # (C, H, W)
    # One output channel per kernel; a 2D kernel reads every input channel alike.
    if chosen:
        w = np.stack([np.broadcast_to(k, (x.shape[0], *k.shape)) for k in chosen.values()])
    else:
        w = base.w
    b = base.b if bias is None else np.full(w.shape[0], bias)
    if padding is not None and padding >= min(w.shape[-2:]):
        raise ValueError(
            f"--padding must be smaller than the kernel ({w.shape[-2]}x{w.shape[-1]}), so that "
            f"every window holds an input value. Received: --padding {padding}"
        )
    request = ConvExample(
        name=base.name if input_file is None and not kernels else "user",
        title=base.title
        if input_file is None and not kernels
        else f"convolution of {input_file or base.name}",
        x=x,
        w=w,
        b=b,
        stride=base.stride if stride is None else stride,
        padding=base.padding if padding is None else padding,
        note=base.note if input_file is None and not kernels else "",
    )
    return request, chosen


# The library names its Python arguments; where a name differs from the option, the error
# names the option the user typed (the others, like stride=0, read the same either way).
EXPLAIN_FLAGS = {
    "path": "--out",
    "input": "--input",
    "padding": "--padding",
    "stride": "--stride",
    "size": "--size",
    "at": "--at",
}


@explain_app.command("conv")
@user_errors(flags=EXPLAIN_FLAGS)
def explain_conv_command(
    example: Annotated[
        ConvExampleName, typer.Option(help="The slide example: 2d (one channel) or rgb (3D).")
    ] = ConvExampleName.two_d,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Your own data: .npy, .csv or an image.")
    ] = None,
    kernel: Annotated[
        list[str] | None,
        typer.Option(
            help="A kernel like '0,-1,0;-1,5,-1;0,-1,0' or a preset "
            f"({', '.join(KERNELS)}); repeat for several feature maps."
        ),
    ] = None,
    bias: Annotated[float | None, typer.Option(help="Bias added to every output cell.")] = None,
    stride: Annotated[int | None, typer.Option(help="Stride (default 1).")] = None,
    padding: Annotated[
        int | None, typer.Option(help="Zero padding (default 1, as on the slide).")
    ] = None,
    dilation: Annotated[int, typer.Option(help="Dilation of the kernel.")] = 1,
    at: Annotated[str, typer.Option(help="The output cell ROW,COL to explain.")] = "0,0",
    all_terms: Annotated[
        bool, typer.Option("--all-terms", help="Show zero terms too (the slide leaves them out).")
    ] = False,
    out_png: Annotated[
        Path | None, typer.Option("--out", help="Write the input and feature maps to this PNG.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Explain one output cell of a convolution: window, products, sums, bias, result."""
    request, chosen = conv_request(example, input_file, kernel, bias, stride, padding)
    cell = parse_cell(at)
    traces = [
        explain_conv(
            request.x,
            request.w,
            request.b,
            at=cell,
            stride=request.stride,
            padding=request.padding,
            dilation=dilation,
            out_channel=channel,
        )
        for channel in range(request.w.shape[0])
    ]
    figure = None
    if out_png is not None:
        image = request.x.mean(axis=0)  # (H, W): a multi-channel input is shown as its mean
        with output_errors("--out", out_png):
            figure = feature_maps_figure(
                image,
                chosen or {"kernel": request.w[0, 0]},
                out_png,
                padding=request.padding,
                stride=request.stride,
            )
    if json_output:
        print_json(
            {
                "example": request.name,
                "kernels": {name: k for name, k in chosen.items()},
                "traces": [t.to_dict() for t in traces],
                "figure": str(figure) if figure else None,
            }
        )
        return
    render_conv(request, list(chosen), traces, all_terms)
    if figure is not None:
        out.print(
            f"\nWrote {figure}: the input and {len(traces)} feature map(s) side by side.",
            markup=False,
        )


def render_conv(
    request: ConvExample, names: list[str], traces: list[ConvTrace], all_terms: bool
) -> None:
    x = request.x
    channels, height, width = x.shape
    out.print(f"[bold]{escape(request.title)}[/]")
    out.print(
        f"input {channels}x{height}x{width}, zero padding {request.padding}, "
        f"stride {request.stride}, {len(traces)} kernel(s)"
        + (f", bias {request.b[0]:g}" if request.b is not None else ", no bias")
    )
    first = traces[0]
    row, col = first.at
    kh, kw = first.channels[0].kernel.shape
    if max(first.padded_input.shape[1:]) <= MAX_PRINTED_SIDE:
        out.print(f"(zero-padded input; the window of output cell ({row}, {col}) is highlighted)")
        top, left = first.window_origin
        panels = []
        for c, trace_channel in enumerate(first.channels):
            suffix = f" channel {c + 1}" if channels > 1 else ""
            panels.append(
                matrix_table(first.padded_input[c], f"input{suffix}", (top, left, kh, kw))
            )
            panels.append(matrix_table(trace_channel.window, "window"))
            panels.append(
                matrix_table(trace_channel.kernel, f"kernel {c + 1}" if suffix else "kernel")
            )
            out.print(Columns(panels, padding=(0, 4)))
            panels = []
    for trace, name in zip(traces, names or [None] * len(traces), strict=True):
        label = f" with kernel {name!r}" if name and len(traces) > 1 else ""
        out.print(f"\n[bold]output cell ({row}, {col}){escape(label)}[/]")
        for line in trace.equation(all_terms).splitlines():
            out.print(f"  {line}")
        output = trace.output
        if max(output.shape) <= MAX_PRINTED_SIDE:
            out.print(matrix_table(output, f"output map {output.shape[0]}x{output.shape[1]}"))
        else:
            out.print(
                f"output map {output.shape[0]}x{output.shape[1]}: min {output.min():g}, "
                f"max {output.max():g} (use --out maps.png to see it, --json for the numbers)"
            )
    if request.note:
        out.print(f"\n[dim]note: {escape(request.note)}[/]")


@explain_app.command("pool")
@user_errors(flags=EXPLAIN_FLAGS)
def explain_pool_command(
    mode: Annotated[PoolModeName, typer.Option(help="max or avg pooling.")] = PoolModeName.max,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Your own data: .npy, .csv or an image.")
    ] = None,
    size: Annotated[int, typer.Option(help="Pool size (the window is size x size).")] = 2,
    stride: Annotated[int | None, typer.Option(help="Stride (default: the pool size).")] = None,
    padding: Annotated[int, typer.Option(help="Padding (at most half the pool size).")] = 0,
    at: Annotated[str, typer.Option(help="The output cell ROW,COL to explain.")] = "0,0",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Explain one output cell of max or average pooling, on the slide's 4x4 input by default."""
    example = SLIDE_POOL_MAX if mode is PoolModeName.max else SLIDE_POOL_AVG
    if input_file is None:
        x, title, note = example.x, example.title, example.note
    else:
        x, title, note = load_input(input_file), str(input_file), ""
        if x.ndim != 2:
            raise ValueError(
                f"--input for pooling must be one 2D map. Received: --input={input_file} "
                f"with shape {x.shape}"
            )
    trace = explain_pool(x, size, stride, padding, mode.value, at=parse_cell(at))
    if json_output:
        print_json({"title": title, "note": note, **trace.to_dict()})
        return
    render_pool(trace, title, note)


def render_pool(trace: PoolTrace, title: str, note: str) -> None:
    out.print(f"[bold]{escape(title)}[/]")
    size_h, size_w = trace.size
    out.print(f"{trace.mode} pooling, {size_h}x{size_w} pool, stride {trace.stride[0]}")
    row, col = trace.at
    panels: list[Any] = []
    if max(trace.padded_input.shape) <= MAX_PRINTED_SIDE:
        out.print(f"(the window of output cell ({row}, {col}) is highlighted)")
        top, left = trace.window_origin
        panels.append(matrix_table(trace.padded_input, "input", (top, left, size_h, size_w)))
        panels.append(matrix_table(trace.window, "window"))
    if max(trace.output.shape) <= MAX_PRINTED_SIDE:
        panels.append(matrix_table(trace.output, "output"))
    out.print(Columns(panels, padding=(0, 4)))
    out.print(Group(f"\n[bold]output cell ({row}, {col})[/]", f"  {trace.equation()}"))
    if note:
        out.print(f"\n[dim]note: {escape(note)}[/]")


def kernel_presets() -> dict[str, dict[str, Any]]:
    """The named kernels with their values and one-line descriptions."""
    return {
        name: {"values": KERNELS[name], "description": KERNEL_DESCRIPTIONS.get(name, "")}
        for name in KERNELS
    }


@explain_app.command("kernels")
@user_errors
def explain_kernels_command(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The named kernel presets accepted by --kernel."""
    presets = kernel_presets()
    if json_output:
        print_json(presets)
        return
    panels = [
        matrix_table(np.asarray(p["values"]), f"{name}: {p['description']}")
        for name, p in presets.items()
    ]
    out.print(Columns(panels, padding=(1, 4)))
