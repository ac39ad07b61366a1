"""What every command shares: consoles, error handling, JSON output, argument parsing, tables."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from cnnlab.ops import format_number

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# --quiet on the commands that report progress (epochs, points, downloads, exports).
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="Print only the result: no progress or per-epoch lines (warnings and errors still "
        "go to stderr).",
    ),
]

USAGE_EXIT = 2  # bad input (and an output that cannot be written), as click's usage errors
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
UNLIMITED_WIDTH = 1 << 16  # for measuring a table's natural widths

# atomic_write's temporary names, ".NAME.PID.HEX.tmp" or mkstemp's ".NAME.RANDOM.tmp": an error
# names the file the user asked for, not the temporary one.
_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?:\d+\.)?\w{8,32}\.tmp$")


def user_errors(
    command: Callable[..., Any] | None = None, *, flags: Mapping[str, str] | None = None
) -> Any:
    """Turn the library's input errors into one line on stderr and exit status 2.

    ``ValueError``, ``FileNotFoundError`` and other ``OSError``s (a read-only folder, a full
    disk) print one line; Ctrl-C prints one line and exits 130. ``flags`` maps the library's
    parameter names to the command's options (``{"db_url": "--db"}``): the library names its
    Python arguments (``Received: db_url='x'``), the user reads the flag they typed. Under
    ``--json`` the same message is also printed on stdout as ``{"error": "..."}``.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                with warnings.catch_warnings():
                    warnings.showwarning = print_warning
                    return function(*args, **kwargs)
            except ValueError as error:
                message = name_flags(str(error), flags or {})
            except OSError as error:
                message = name_flags(describe_os_error(error), flags or {})
            except OverflowError as error:  # a number too large for C, SQLite or numpy
                message = f"a number is too large ({error}): expected a smaller value"
            except KeyboardInterrupt:
                err.print(Text("interrupted (Ctrl-C)"))
                raise typer.Exit(INTERRUPTED_EXIT) from None
            print_error(message)
            if kwargs.get("json_output"):  # under --json a script reads the error on stdout too
                print(json.dumps({"error": " ".join(message.split())}))
            raise typer.Exit(USAGE_EXIT)

        return wrapper

    return decorate if command is None else decorate(command)


LONG_VALUE = 200  # characters without a space shown whole in a message; longer ones are cut


def print_error(message: str) -> None:
    """``error: message`` on stderr as one line; the message is printed literally (no markup),
    and a value too long to read (a 10,000-character name) is cut in its middle."""
    text = _LONG_RUN.sub(_cut_middle, " ".join(message.split()))
    err.print(Text.assemble(("error:", "bold red"), " ", text))


_LONG_RUN = re.compile(rf"\S{{{LONG_VALUE + 1},}}")


def _cut_middle(match: re.Match[str]) -> str:
    value = match.group()
    return f"{value[:100]}...({len(value):,} characters)...{value[-40:]}"


def print_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A Python warning as ``warning: message`` on one line (``warnings.showwarning``'s
    signature), not as a file name, a line number and a line of cnnlab's source."""
    err.print(Text.assemble(("warning:", "bold yellow"), " ", " ".join(str(message).split())))


def name_flags(message: str, flags: Mapping[str, str]) -> str:
    """``"out must be a folder. Received: out='x'"`` as ``"--out must be ... --out='x'"``."""
    for name, flag in flags.items():
        message = re.sub(rf"(?<![\w.\-]){re.escape(name)}(?==\S)", flag, message)
        message = re.sub(rf"^{re.escape(name)}(?=[ :])", flag, message)
    return message


def describe_os_error(error: OSError) -> str:
    """``"cannot use PATH: No space left on device"``, naming the file meant, not a temp file."""
    path = _meant_path(error)
    if path is None:
        return str(error)
    if isinstance(error, FileNotFoundError):
        return f"No such file or folder: {path}"
    return f"cannot use {path}: {error.strerror or type(error).__name__}"


def _meant_path(error: OSError) -> Path | None:
    """The file an error is about; for a temporary file of an atomic write, the file meant."""
    if error.filename is None:
        return None
    path = Path(os.fsdecode(error.filename))
    temporary = _TEMPORARY.match(path.name)
    return path.with_name(temporary["name"]) if temporary else path


@contextlib.contextmanager
def output_errors(flag: str, path: str | os.PathLike[str], *, given: bool = True) -> Iterator[None]:
    """An ``OSError`` while writing ``path`` (a read-only folder, a full disk, a file where a
    folder should be) as a ``ValueError`` naming the flag, the path and what was expected.

    ``given=False``: ``path`` is the default, the user did not type ``flag``.
    """
    try:
        yield
    except OSError as error:
        if not _concerns(error, Path(path)):
            raise
        reason = error.strerror or str(error) or type(error).__name__
        received = f"Received: {flag} {path}" if given else f"(no {flag} given: the default {path})"
        raise ValueError(
            f"cannot write {_meant_path(error) or path} ({reason}): {flag} expects a place where "
            f"files can be written (a writable folder, with free space). {received}"
        ) from None


def _concerns(error: OSError, path: Path) -> bool:
    """Whether ``error`` is about ``path``: the path, a file in it or next to it, or a parent
    folder on the way to it (or it names no file: a write that failed, as on a full disk)."""
    if error.filename is None:  # errno set: the system's error, as a write on a full disk
        return error.errno is not None
    where = Path(os.fsdecode(error.filename)).absolute()
    target = path.absolute()
    return (
        where == target
        or where in target.parents
        or target in where.parents
        or where.parent == target.parent
    )


class WholeTable(Table):
    """A table that never cuts a ``no_wrap`` cell and never squeezes a column to nothing.

    Give numbers, names and paths ``no_wrap=True``: they are printed whole. On a narrow terminal,
    or in a pipe (where rich assumes 80 columns), only the other columns fold, at their spaces;
    a table whose whole cells do not fit is printed wider than the terminal (which then wraps the
    line) rather than cut inside a number or a path.
    """

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for column in self.columns:
            if column.no_wrap:
                widths = [_cell_width(cell) for cell in (column.header, *column.cells)]
                column.min_width = max([column.min_width or 0, *widths])
        unlimited = options.update_width(UNLIMITED_WIDTH)
        needed = Measurement.get(console, unlimited, self).minimum
        return super().__rich_console__(
            console, options.update_width(max(options.max_width, needed))
        )


def _cell_width(cell: Any) -> int:
    """The widest line of a cell (markup as rendered); 0 for other renderables."""
    text = Text.from_markup(cell) if isinstance(cell, str) else cell
    if not isinstance(text, Text):
        return 0
    return max(line.cell_len for line in text.split(allow_blank=True))


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
) -> WholeTable:
    """A 2D array as a right-aligned grid; ``highlight`` = (row, col, height, width) to mark."""
    table = WholeTable(
        title=title, show_header=False, box=None, padding=(0, 1), title_justify="left"
    )
    for _ in range(matrix.shape[1]):
        table.add_column(justify="right", no_wrap=True)
    for r, row in enumerate(matrix):
        cells = [format_number(v) if np.isfinite(v) else "." for v in row]
        if highlight is not None:
            top, left, height, width = highlight
            if top <= r < top + height:
                for c in range(left, min(left + width, len(cells))):
                    cells[c] = f"[reverse]{cells[c]}[/]"
        table.add_row(*cells)
    return table
