"""Files written so that a crash never leaves half of one: temp file, fsync, rename.

Every file cnnlab writes (checkpoints, reports, JSON results, PNGs, caches) goes through
``atomic_write``: a kill at any moment leaves either the previous file or the new one.
``default_output_dir`` is the one place that decides where a command writes when the user
does not say: ``runs/<command>-<YYYYmmdd-HHMMSS>`` under the working directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

RUNS_FOLDER = "runs"


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file, fsync, then rename it."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "xb") as file:  # a new file, with the umask's permissions
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)
    return path


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """``data`` as indented JSON, atomically; NaN and infinity are refused, not written."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode()))


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON line and make it durable before returning."""
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(record, allow_nan=False) + "\n")
        file.flush()
        os.fsync(file.fileno())


def write_jsonl(path: str | os.PathLike[str], records: list[dict[str, Any]]) -> Path:
    """Replace ``path`` with one JSON line per record, atomically."""
    text = "".join(json.dumps(record, allow_nan=False) + "\n" for record in records)
    return atomic_write(path, lambda file: file.write(text.encode()))


def default_output_dir(name: str, *, root: str | os.PathLike[str] = RUNS_FOLDER) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... if taken); not created yet.

    Every command that writes results without being told where puts them here, so a user's
    working directory collects one ignored ``runs/`` folder rather than loose files.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    path, number = base, 1
    while path.exists():
        number += 1
        path = base.with_name(f"{base.name}-{number}")
    return path
