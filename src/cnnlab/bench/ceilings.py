"""Measured peaks of a device: the matrix-multiply rate per dtype and the memory bandwidth.

These ceilings are the denominators of utilisation: a training run that achieves 40 TFLOP/s
on a GPU whose bf16 matmul reaches 780 TFLOP/s uses about 5 % of it. The method is the usual
one for a sound micro-benchmark (as in nanoGPT's ``bench.py``): random inputs (never zeros:
a GPU draws less power on zeros and clocks higher), a warm-up call, the device synchronised
before every clock read, back-to-back calls per repeat so that one clock read covers enough
work, and the median of the repeats. Sizes fill the device: square matmuls of 2048 (4096 on a
CPU with 8 threads or more) or 8192 on a GPU, and a copy of a buffer at least twice the
last-level cache (at least 256 MiB on a CPU, 2 GiB on a GPU) for the bandwidth.

FLOPs of an (m, k) x (k, n) matmul are 2mkn (one multiply and one add per term); a copy of
B bytes moves 2B (B read plus B written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab.bench.memory import check_fits
from cnnlab.runtime.contention import CpuCounters, others_cpu_share
from cnnlab.runtime.context import software_context
from cnnlab.runtime.devices import (
    device_name,
    matmul_tf32,
    resolve_device,
    synchronize,
    tf32_enabled,
)
from cnnlab.runtime.files import write_json
from cnnlab.runtime.validate import check_positive_int

CEILINGS_FORMAT = "cnnlab-ceilings"
MIB = 1 << 20
CPU_DTYPES = ("fp32", "bf16")
CUDA_DTYPES = ("fp32", "tf32", "bf16", "fp16")  # fp32 with TF32 off, then TF32 on
TORCH_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
PRECISION_DTYPES = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}  # training precision -> dtype
MIN_REPEATS = 3  # a median needs a few values, whatever the budget
CPU_BUFFER_BYTES = 256 * MIB
CUDA_BUFFER_BYTES = 2048 * MIB


@dataclass(frozen=True)
class MatmulRate:
    """Square matmuls of ``size`` in one dtype: ``seconds`` is the median time of one call."""

    flops_per_second: float
    size: int
    seconds: float  # median over the repeats, of one matmul
    repeats: int
    times: tuple[float, ...] = ()  # each repeat's time of one matmul (its calls' mean)
    calls_per_repeat: int = 1

    @property
    def flops(self) -> int:
        return matmul_flops(self.size, self.size, self.size)

    def __repr__(self) -> str:
        return (
            f"MatmulRate({self.flops_per_second / 1e12:.3f} TFLOP/s, size={self.size}, "
            f"median {self.seconds * 1e3:.3f} ms of {self.repeats} repeats)"
        )


@dataclass(frozen=True)
class CopyRate:
    """A copy of ``buffer_bytes``: ``bytes_per_second`` counts the bytes read plus written."""

    bytes_per_second: float
    buffer_bytes: int
    seconds: float  # median over the repeats, of one copy
    repeats: int
    times: tuple[float, ...] = ()
    calls_per_repeat: int = 1

    def __repr__(self) -> str:
        return (
            f"CopyRate({self.bytes_per_second / 1e9:.1f} GB/s, buffer={self.buffer_bytes // MIB} "
            f"MiB, median {self.seconds * 1e3:.3f} ms of {self.repeats} repeats)"
        )


@dataclass(frozen=True)
class Ceilings:
    """What one device delivers at best: matmul FLOP/s per dtype and copy bandwidth."""

    device: str
    device_name: str
    matmul: Mapping[str, MatmulRate]  # "fp32" (TF32 off on CUDA), "tf32", "bf16", "fp16"
    copy: CopyRate | None
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def bandwidth_bytes_per_second(self) -> float | None:
        return None if self.copy is None else self.copy.bytes_per_second

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CEILINGS_FORMAT,
            "version": 1,
            "device": self.device,
            "device_name": self.device_name,
            "matmul": {name: _rate_dict(rate) for name, rate in self.matmul.items()},
            "bandwidth_bytes_per_second": self.bandwidth_bytes_per_second,
            "copy": None if self.copy is None else _rate_dict(self.copy),
            "context": dict(self.context),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ceilings:
        """The inverse of ``to_dict`` (reads a ceilings-<device>.json)."""
        if data.get("format") != CEILINGS_FORMAT:
            raise ValueError(
                f"not a {CEILINGS_FORMAT} file. Received: format={data.get('format')!r}"
            )
        copy = data.get("copy")
        return cls(
            device=data["device"],
            device_name=data["device_name"],
            matmul={
                name: MatmulRate(**{**rate, "times": tuple(rate["times"])})
                for name, rate in data["matmul"].items()
            },
            copy=None if copy is None else CopyRate(**{**copy, "times": tuple(copy["times"])}),
            context=data.get("context", {}),
        )

    def __repr__(self) -> str:
        rates = ", ".join(
            f"{name} {rate.flops_per_second / 1e12:.2f}" for name, rate in self.matmul.items()
        )
        bandwidth = self.bandwidth_bytes_per_second
        copy = "" if bandwidth is None else f", copy {bandwidth / 1e9:.1f} GB/s"
        return f"Ceilings({self.device!r}, {self.device_name!r}, TFLOP/s: {rates}{copy})"


def _rate_dict(rate: MatmulRate | CopyRate) -> dict[str, Any]:
    return {**dataclasses.asdict(rate), "times": list(rate.times)}


def matmul_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an (m, k) x (k, n) matmul: m*n dot products of length k, a multiply and an add
    per term."""
    return 2 * m * k * n


def device_dtypes(device: torch.device) -> tuple[str, ...]:
    """The matmul dtypes measured on ``device`` by default: TF32 and fp16 only on CUDA."""
    return CUDA_DTYPES if device.type == "cuda" else CPU_DTYPES


def default_matmul_size(device: torch.device) -> int:
    if device.type == "cuda":
        return 8192
    return 4096 if torch.get_num_threads() >= 8 else 2048


def default_buffer_bytes(device: torch.device) -> int:
    """Large enough that the copy runs from memory, not from the last-level cache."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return min(CUDA_BUFFER_BYTES, max(MIB, free // 4 // MIB * MIB))  # source + copy <= free/2
    cache = last_level_cache_bytes()
    if not cache:
        return CPU_BUFFER_BYTES
    return max(CPU_BUFFER_BYTES, MIB << math.ceil(math.log2(2 * cache / MIB)))  # a power of two


def last_level_cache_bytes() -> int | None:
    """The CPU's largest cache (Linux sysfs), or None where it cannot be read."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        found = re.fullmatch(r"(\d+)([KMG]?)", path.read_text().strip())
        if found:
            unit = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[found.group(2)]
            sizes.append(int(found.group(1)) * unit)
    return max(sizes) if sizes else None


def time_repeats(
    call: Callable[[], Any],
    device: torch.device,
    *,
    repeats: int,
    budget_seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[tuple[float, ...], int]:
    """Seconds of one ``call`` per repeat, and the calls per repeat.

    One call warms up (allocations, kernel selection) and a second, timed, sets how many calls
    go back to back per repeat so that each repeat lasts about ``budget_seconds / repeats``.
    Repeats stop at ``repeats`` or once the budget is spent, after at least ``MIN_REPEATS``.
    """
    call()
    synchronize(device)
    start = clock()
    call()
    synchronize(device)
    single = max(clock() - start, 1e-9)
    calls = max(1, round(budget_seconds / repeats / single))
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (len(times) < MIN_REPEATS or spent < budget_seconds):
        synchronize(device)
        start = clock()
        for _ in range(calls):
            call()
        synchronize(device)
        elapsed = clock() - start
        spent += elapsed
        times.append(elapsed / calls)
    return tuple(times), calls


def measure_matmul(
    dtype: str,
    device: torch.device,
    *,
    size: int,
    repeats: int,
    budget_seconds: float,
    seed: int = 0,
) -> MatmulRate:
    """FLOP/s of (size, size) x (size, size) matmuls in ``dtype`` ("tf32": float32, TF32 on)."""
    generator = torch.Generator(device).manual_seed(seed)
    a, b = (
        torch.randn(size, size, generator=generator, device=device).to(TORCH_DTYPES[dtype])
        for _ in range(2)
    )
    product = torch.empty(size, size, dtype=TORCH_DTYPES[dtype], device=device)
    with matmul_tf32(dtype == "tf32") if device.type == "cuda" else contextlib.nullcontext():
        times, calls = time_repeats(
            lambda: torch.matmul(a, b, out=product),
            device,
            repeats=repeats,
            budget_seconds=budget_seconds,
        )
    seconds = statistics.median(times)
    return MatmulRate(
        flops_per_second=matmul_flops(size, size, size) / seconds,
        size=size,
        seconds=seconds,
        repeats=len(times),
        times=times,
        calls_per_repeat=calls,
    )


def measure_copy(
    device: torch.device,
    *,
    buffer_bytes: int,
    repeats: int,
    budget_seconds: float,
    seed: int = 0,
) -> CopyRate:
    """Bytes per second of ``dst.copy_(src)`` on ``device``, counting the read and the write."""
    generator = torch.Generator(device).manual_seed(seed)
    block = torch.randint(0, 256, (MIB,), dtype=torch.uint8, generator=generator, device=device)
    rows = math.ceil(buffer_bytes / MIB)
    source = torch.empty(rows, MIB, dtype=torch.uint8, device=device)
    source.copy_(block.expand(rows, MIB))  # random bytes, every page touched; cheaper than rand
    target = torch.empty_like(source)
    times, calls = time_repeats(
        lambda: target.copy_(source), device, repeats=repeats, budget_seconds=budget_seconds
    )
    seconds = statistics.median(times)
    return CopyRate(
        bytes_per_second=2 * source.nbytes / seconds,
        buffer_bytes=source.nbytes,
        seconds=seconds,
        repeats=len(times),
        times=times,
        calls_per_repeat=calls,
    )


def check_ceilings_sizes(
    device: torch.device, size: int | None, buffer_bytes: int | None
) -> tuple[int, int]:
    """The matmul size and copy buffer (defaults filled in), refused before anything is
    allocated when not positive or larger than ``device``'s free memory."""
    size = default_matmul_size(device) if size is None else size
    check_positive_int("size", size)
    # Two fp32 operands, their conversion to the measured dtype and the product: 4 matrices.
    check_fits("size", size, 4 * size * size * 4, device)
    buffer_bytes = default_buffer_bytes(device) if buffer_bytes is None else buffer_bytes
    check_positive_int("buffer_bytes", buffer_bytes)
    check_fits("buffer_bytes", buffer_bytes, 2 * buffer_bytes, device)  # source and copy
    return size, buffer_bytes


def measure_ceilings(
    device: str = "auto",
    *,
    dtypes: str | tuple[str, ...] | list[str] | None = None,
    size: int | None = None,
    buffer_bytes: int | None = None,
    bandwidth: bool = True,
    repeats: int = 10,
    budget_seconds: float = 2.0,
    seed: int = 0,
) -> Ceilings:
    """Measure the matmul rate of each dtype and the copy bandwidth of ``device``.

    ``dtypes`` defaults to fp32 and bf16 on a CPU; fp32 (TF32 off), tf32, bf16 and fp16 on
    CUDA. ``budget_seconds`` caps the timed repeats of each measurement (at least three run).
    """
    resolved = resolve_device(device)
    allowed = device_dtypes(resolved)
    chosen = allowed if dtypes is None else (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
    unknown = [name for name in chosen if name not in allowed]
    if unknown or not chosen:
        raise ValueError(
            f"dtypes must be some of {', '.join(allowed)} on {resolved.type}. "
            f"Received: dtypes={list(chosen)!r}"
        )
    size, buffer_bytes = check_ceilings_sizes(resolved, size, buffer_bytes)
    check_positive_int("repeats", repeats)
    if not isinstance(budget_seconds, (int, float)) or not budget_seconds > 0:
        raise ValueError(f"budget_seconds must be > 0. Received: budget_seconds={budget_seconds!r}")
    start, counters = time.perf_counter(), CpuCounters.read()
    matmul = {
        name: measure_matmul(
            name,
            resolved,
            size=size,
            repeats=repeats,
            budget_seconds=budget_seconds,
            seed=seed,
        )
        for name in chosen
    }
    copy = None
    if bandwidth:
        copy = measure_copy(
            resolved,
            buffer_bytes=buffer_bytes,
            repeats=repeats,
            budget_seconds=budget_seconds,
            seed=seed,
        )
    return Ceilings(
        device=str(resolved),
        device_name=device_name(resolved),
        matmul=matmul,
        copy=copy,
        context={
            **_context(resolved, repeats, budget_seconds, seed),
            "wall_seconds": time.perf_counter() - start,
            "others_cpu_share": others_cpu_share(counters, CpuCounters.read()),
        },
    )


def _context(device: torch.device, repeats: int, budget: float, seed: int) -> dict[str, Any]:
    return {
        **software_context(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "budget_seconds_per_measurement": budget,
        "seed": seed,
        "method": (
            "random inputs; one warm-up call; the device synchronised before each clock read; "
            "each repeat times calls back to back; the median of the repeats. matmul FLOPs = "
            "2*m*k*n; copy bytes = bytes read + bytes written. Excluded: allocating and filling "
            "the inputs, the warm-up and calibration calls. TF32 (CUDA) is restored afterwards."
        ),
    }


def ceiling_for(ceilings: Ceilings, precision: str) -> float | None:
    """The matmul FLOP/s that bounds training at ``precision`` ("fp32", "bf16", "fp16").

    On CUDA, fp32 training runs its matmuls in TF32 when torch allows it, so the ceiling is the
    TF32 rate then and the full-fp32 rate otherwise. None when that dtype was not measured.
    """
    if precision not in PRECISION_DTYPES:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISION_DTYPES)}. "
            f"Received: precision={precision!r}"
        )
    dtype = PRECISION_DTYPES[precision]
    if dtype == "fp32" and ceilings.device.startswith("cuda") and tf32_enabled():
        dtype = "tf32"
    rate = ceilings.matmul.get(dtype)
    return None if rate is None else rate.flops_per_second


def ceilings_filename(device: str) -> str:
    """``ceilings-cpu.json``, ``ceilings-cuda.json``, ``ceilings-cuda-1.json``."""
    return f"ceilings-{device.replace(':', '-')}.json"


def write_ceilings(ceilings: Ceilings, directory: str | Path) -> Path:
    """Write ceilings-<device>.json (with the datasheet comparison) into ``directory``,
    atomically."""
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"directory must be a folder. Received: directory={str(folder)!r} (an existing file)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    data = ceilings.to_dict()
    from cnnlab.bench.datasheet import compare_to_datasheet

    data["datasheet"] = [row.to_dict() for row in compare_to_datasheet(ceilings)]
    return write_json(folder / ceilings_filename(ceilings.device), data)


def load_ceilings(path: str | Path) -> Ceilings:
    """Read a ceilings-<device>.json written by ``write_ceilings``."""
    import json

    return Ceilings.from_dict(json.loads(Path(path).read_text()))
