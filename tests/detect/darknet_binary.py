"""Debian's `darknet` binary as an oracle: the lines it prints for one image."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

DARKNET_ROOT = Path("/usr/share/darknet")
DARKNET_BIN = shutil.which("darknet")
needs_darknet_binary = pytest.mark.requires(
    DARKNET_BIN is None
    or shutil.which("stdbuf") is None
    or not (DARKNET_ROOT / "data" / "dog.jpg").is_file(),
    "Debian's darknet binary (and coreutils' stdbuf)",
)


def darknet_lines(arguments: list[object], thresh: float, folder: Path) -> list[str]:
    """The lines of `darknet ARGUMENTS -thresh THRESH` run in ``folder`` (``detect CFG WEIGHTS
    IMAGE`` or ``detector test DATA CFG WEIGHTS IMAGE``). Debian's binary then opens a window
    and waits for a key, so its output (line-buffered by stdbuf) is read until it has saved
    predictions.jpg (after printing every box) and been quiet for 5 s: a loaded machine may
    pause between lines."""
    for link in ("cfg", "data"):  # it reads cfg/coco.data and data/coco.names, data/labels here
        (folder / link).symlink_to(DARKNET_ROOT / link)
    command = ["stdbuf", "-oL", DARKNET_BIN, *map(str, arguments)]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    process = subprocess.Popen(
        [*command, "-thresh", str(thresh)], cwd=folder, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # raw reads of the pipe: a buffered readline may pull several lines into Python's buffer,
    # where select() no longer sees them
    received, fd = b"", process.stdout.fileno()
    deadline, quiet_since = time.monotonic() + 300, None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                received += chunk
                quiet_since = time.monotonic()
            elif (
                quiet_since
                and time.monotonic() - quiet_since > 5
                and b"Predicted" in received
                and any(folder.glob("predictions.*"))  # saved after every box is printed
            ):
                break
    finally:
        process.kill()
        process.wait()
    return received.decode().splitlines()
