"""What every command shares: consoles, error handling, JSON output, argument parsing."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from enum import Enum
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from cnnlab.ops import format_number

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's input errors into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ValueError, FileNotFoundError) as error:
            err.print(f"[bold red]error:[/] {error}", markup=True)
            raise typer.Exit(2) from None

    return wrapper


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no colour codes), for scripts."""
    print(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parse_shape(text: str | None, argument: str = "--input") -> tuple[int, ...] | None:
    """``"3,224,224"`` (or ``3x224x224``) to a tuple of positive integers."""
    if text is None:
        return None
    parts = text.lower().replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(v < 1 for v in shape):
        raise ValueError(
            f"{argument} expects positive integers like 3,224,224 (C,H,W). Received: {text!r}"
        )
    return shape


def parse_cell(text: str, argument: str = "--at") -> tuple[int, int]:
    """``"ROW,COL"`` to a pair of integers."""
    try:
        row, col = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"{argument} expects ROW,COL as two integers, like 0,0. Received: {text!r}"
        ) from None
    return row, col


def matrix_table(
    matrix: np.ndarray,
    title: str | None = None,
    highlight: tuple[int, int, int, int] | None = None,
) -> Table:
    """A 2D array as a right-aligned grid; ``highlight`` = (row, col, height, width) to mark."""
    table = Table(title=title, show_header=False, box=None, padding=(0, 1), title_justify="left")
    for _ in range(matrix.shape[1]):
        table.add_column(justify="right")
    for r, row in enumerate(matrix):
        cells = [format_number(v) if np.isfinite(v) else "." for v in row]
        if highlight is not None:
            top, left, height, width = highlight
            if top <= r < top + height:
                for c in range(left, min(left + width, len(cells))):
                    cells[c] = f"[reverse]{cells[c]}[/]"
        table.add_row(*cells)
    return table
