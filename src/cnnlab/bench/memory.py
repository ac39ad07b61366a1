"""Memory a measurement needs, checked before it is allocated: a size too large for the machine
is one error naming the argument and how much it would need, not an allocator's crash."""

from __future__ import annotations

from pathlib import Path

import torch

GIB = 1 << 30
MIB = 1 << 20


def available_bytes(device: torch.device) -> int | None:
    """Memory that can be allocated now on ``device``, or None where it cannot be told.

    CPU: Linux's MemAvailable (what can be had without swapping); CUDA: the driver's free memory.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def format_bytes(count: float) -> str:
    """``1.5 GiB``, ``320 MiB``: memory sizes as a person reads them."""
    if count >= 1 << 40:
        return f"{count / (1 << 40):,.1f} TiB"
    if count >= GIB:
        return f"{count / GIB:.1f} GiB"
    return f"{max(count, 0) / MIB:.0f} MiB"


def check_fits(argument: str, value: object, needed: int, device: torch.device) -> None:
    """Refuse ``argument=value`` when its ``needed`` bytes exceed what ``device`` has free."""
    free = available_bytes(device)
    if free is not None and needed > free:
        raise ValueError(
            f"{argument}={value!r} needs about {format_bytes(needed)} of memory on {device}, "
            f"more than the {format_bytes(free)} available (expected a smaller value). "
            f"Received: {argument}={value!r}"
        )
