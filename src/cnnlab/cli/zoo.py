"""`cnnlab models` and `cnnlab summary`: the model zoo and its Keras/Darknet-style tables."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from cnnlab.cli.common import WholeTable, out, parse_shape, print_json, user_errors
from cnnlab.models import get_model_spec, list_models
from cnnlab.runtime.validate import check_positive_int
from cnnlab.summary import format_darknet, format_keras, human_count, summarize


class SummaryStyle(str, Enum):
    keras = "keras"
    darknet = "darknet"


@user_errors
def models_command(
    pattern: Annotated[
        str | None, typer.Argument(help="Shell-style filter such as 'resnet*'.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The model zoo: every registered model with its input, parameters and FLOPs."""
    rows = model_zoo(pattern)
    if json_output:
        print_json(rows)
        return
    out.print(zoo_table(rows))


def model_zoo(pattern: str | None = None) -> list[dict[str, Any]]:
    names = list_models(pattern)
    if not names:
        raise ValueError(
            f"no model matches {pattern!r}; PATTERN is a shell-style filter such as 'resnet*' "
            f"(registered: {', '.join(list_models())}). Received: PATTERN={pattern!r}"
        )
    rows = []
    for name in names:
        spec, result = get_model_spec(name), summarize(name)
        rows.append(
            {
                "name": name,
                "input": list(spec.input_shape),
                "classes": spec.num_classes,
                "params": result.total_params,
                "trainable_params": result.trainable_params,
                "forward_gflops": result.forward_flops / 1e9,
                "description": spec.description,
            }
        )
    return rows


def zoo_table(rows: list[dict[str, Any]]) -> WholeTable:
    """One line per model; only the description is shortened when the terminal is narrow."""
    cells = [
        (
            row["name"],
            "x".join(map(str, row["input"])),
            str(row["classes"]),
            f"{row['trainable_params']:,}",
            f"{human_count(row['forward_gflops'] * 1e9)}",
            row["description"],
        )
        for row in rows
    ]
    table = WholeTable(title="cnnlab model zoo", title_justify="left")
    headers = ("model", "input", "classes", "params", "FLOPs")
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    for i, (header, width) in enumerate(zip(headers, widths, strict=True)):
        table.add_column(
            header, justify="left" if i == 0 else "right", no_wrap=True, min_width=width
        )
    # Each column costs its width plus 3 characters of border and padding.
    room = max(16, out.width - sum(widths) - 3 * (len(widths) + 1) - 1)
    table.add_column("what", no_wrap=True, overflow="ellipsis", max_width=room)
    for row in cells:
        table.add_row(*row)
    return table


@user_errors
def summary_command(
    model: Annotated[str, typer.Argument(help="A model name from `cnnlab models`.")],
    style: Annotated[
        SummaryStyle, typer.Option(help="keras: Keras's model.summary(); darknet: Darknet's table.")
    ] = SummaryStyle.keras,
    input_size: Annotated[
        str | None,
        typer.Option("--input", help="Per-sample input C,H,W; defaults to the model's own."),
    ] = None,
    num_classes: Annotated[int | None, typer.Option(help="Override the class count.")] = None,
    in_channels: Annotated[int | None, typer.Option(help="Override the input channels.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A model's layers, output shapes, parameters and FLOPs, in Keras or Darknet style."""
    given = (("--num-classes", num_classes), ("--in-channels", in_channels))
    for flag, value in given:
        if value is not None:
            check_positive_int(flag, value)
    kwargs = {
        key: value
        for key, value in (("num_classes", num_classes), ("in_channels", in_channels))
        if value is not None
    }
    shape = parse_shape(input_size)
    if shape is None and "in_channels" in kwargs:
        _, height, width = get_model_spec(model).input_shape
        shape = (kwargs["in_channels"], height, width)
    result = summarize(model, shape, **kwargs)
    if json_output:
        print_json(result.to_dict())
        return
    text = format_keras(result) if style is SummaryStyle.keras else format_darknet(result)
    out.print(text, markup=False)
