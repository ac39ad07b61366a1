"""Devices: which one ``auto`` means, waiting for queued work, and what to call a device.

One code path for CPU and GPU (DESIGN principle 2): everything that runs tensors asks this
module for its ``torch.device`` and synchronises through it before reading a clock.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterator
from pathlib import Path

import torch

# Training/inference precision -> the autocast dtype (None: no autocast, plain float32).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA, else MPS, else the CPU; an unavailable device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be auto, cpu, cuda, cuda:N or mps. Received: device={name!r}"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={name!r} but CUDA is not available here; use cpu or auto")
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device={name!r} but this machine has {count} CUDA device(s) (cuda:0 to "
                f"cuda:{count - 1})"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} but MPS is not available here; use cpu or auto")
    return device


# CPU flags (/proc/cpuinfo) of bfloat16 arithmetic in hardware, which oneDNN's kernels use.
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def fast_bf16(device: torch.device, cpuinfo: str | None = None) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU that supports it, or a CPU
    with AMX or AVX-512 BF16 (elsewhere bfloat16 is emulated, slower than float32).
    ``cpuinfo`` is /proc/cpuinfo's text (read when not given)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return bool(BF16_CPU_FLAGS & cpu_flags(cpuinfo))


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the first ``flags`` (x86) or ``Features`` (Arm) line of
    /proc/cpuinfo's text ``cpuinfo`` (read when not given); empty where it has neither."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a clock read afterwards measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@functools.cache
def _cpuinfo() -> str:
    """The text of /proc/cpuinfo, read once ("" where there is none)."""
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


@functools.cache
def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """A person's name for the device: the GPU's marketing name, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return cpu_name()


def tf32_enabled() -> bool:
    """Whether float32 matmuls on CUDA may use TF32 tensor cores (torch's current setting)."""
    matmul = torch.backends.cuda.matmul
    try:
        return bool(matmul.allow_tf32)
    except RuntimeError:  # set through the newer fp32_precision API, which torch keeps apart
        return matmul.fp32_precision == "tf32"


@contextlib.contextmanager
def matmul_tf32(enabled: bool) -> Iterator[None]:
    """Allow or forbid TF32 for CUDA float32 matmuls inside the block; restored afterwards."""
    matmul = torch.backends.cuda.matmul
    try:
        previous: bool | str = bool(matmul.allow_tf32)
    except RuntimeError:  # the newer fp32_precision API is in use; torch forbids mixing the two
        previous = matmul.fp32_precision
    if isinstance(previous, bool):
        matmul.allow_tf32 = enabled
    else:
        matmul.fp32_precision = "tf32" if enabled else "ieee"
    try:
        yield
    finally:
        if isinstance(previous, bool):
            matmul.allow_tf32 = previous
        else:
            matmul.fp32_precision = previous
