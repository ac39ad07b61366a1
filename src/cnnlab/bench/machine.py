"""This machine, as deep learning sees it: CPU, SIMD features, the PyTorch build, each GPU.

``machine_report()`` gathers it; every piece is data (frozen dataclasses with ``to_dict``) and
the parsers take text, so they can be tested on any machine: ``parse_cpuinfo`` reads
``/proc/cpuinfo``'s format, ``parse_torch_config`` reads ``torch.__config__.show()`` and
``parallel_info()``. GPU clocks, power limit and driver come from NVML when ``pynvml``
(nvidia-ml-py) is installed; without it each such field says why it is not measurable here.
Where a device is in the catalogue (``cnnlab.bench.catalog``), its datasheet peaks come along.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from cnnlab.bench.catalog import DeviceSpec, load_catalog, match_device
from cnnlab.runtime.context import git_commit
from cnnlab.runtime.devices import cpu_flags, cpu_name
from cnnlab.runtime.version import __version__

REPORT_FORMAT = "cnnlab-machine-report"
# The SIMD features that decide how fast deep learning runs, with what each one brings.
X86_FEATURES = {
    "sse4_2": "SSE4.2, 128-bit vectors (the x86-64-v2 baseline)",
    "fma": "fused multiply-add: 2 FLOPs per lane per instruction",
    "avx": "256-bit float vectors",
    "avx2": "256-bit integer vectors; with FMA, PyTorch's AVX2 kernels",
    "avx512f": "512-bit vectors; PyTorch's AVX512 kernels",
    "avx512_bf16": "bfloat16 dot products in AVX-512",
    "avx512_vnni": "int8 dot products (VNNI) for quantized inference",
    "amx_tile": "AMX: 2-D tile registers for matrix multiply",
    "amx_bf16": "AMX bfloat16 matrix multiply (oneDNN uses it)",
    "amx_int8": "AMX int8 matrix multiply",
}
ARM_FEATURES = {
    "asimd": "NEON: 128-bit vectors",
    "fphp": "FP16 scalar arithmetic",
    "asimdhp": "FP16 vector arithmetic",
    "asimddp": "int8 dot products (SDOT/UDOT)",
    "bf16": "bfloat16 instructions",
    "i8mm": "int8 matrix multiply",
    "sve": "scalable vectors (SVE)",
    "sve2": "scalable vectors, second version (SVE2)",
}
NOT_MEASURABLE = "not measurable here"


@dataclass(frozen=True)
class CpuInfo:
    """The CPU: model, counts, and which deep-learning SIMD features it has."""

    model: str
    vendor: str | None
    architecture: str | None  # platform.machine(): x86_64, aarch64, arm64 ...
    sockets: int | None
    cores: int | None  # physical cores, all sockets together
    threads: int | None  # hardware threads (logical CPUs)
    usable_threads: int | None  # the logical CPUs this process may run on (its affinity)
    simd: tuple[tuple[str, bool], ...]  # (feature, present) for X86_FEATURES or ARM_FEATURES
    flags: frozenset[str]  # every flag /proc/cpuinfo lists

    def has(self, feature: str) -> bool:
        return feature in self.flags

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "vendor": self.vendor,
            "architecture": self.architecture,
            "sockets": self.sockets,
            "cores": self.cores,
            "threads": self.threads,
            "usable_threads": self.usable_threads,
            "simd": dict(self.simd),
        }

    def __repr__(self) -> str:
        present = [name for name, has in self.simd if has]
        return (
            f"CpuInfo({self.model!r}, sockets={self.sockets}, cores={self.cores}, "
            f"threads={self.threads}, simd={present})"
        )


@dataclass(frozen=True)
class TorchBuild:
    """What PyTorch was built with and how it runs here."""

    version: str
    cpu_capability: str | None  # the SIMD level its CPU kernels dispatch to, e.g. AVX512
    blas: str | None  # BLAS_INFO, e.g. mkl, openblas, accelerate
    lapack: str | None
    mkl: str | None  # the MKL version, where linked
    onednn: str | None  # the oneDNN (MKL-DNN) version
    openmp: str | None
    parallel_backend: str | None
    threads: int  # torch.get_num_threads(): intra-op threads
    interop_threads: int
    cuda: str | None  # the CUDA runtime it was built for; None for a CPU-only build
    cudnn: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reading:
    """A value read from the driver (NVML), or the reason it could not be read here."""

    value: float | str | None
    unit: str = ""
    why_not: str | None = None  # set when value is None

    def __str__(self) -> str:
        if self.value is None:
            return f"{NOT_MEASURABLE} ({self.why_not})"
        if isinstance(self.value, float):
            return f"{self.value:g} {self.unit}".strip()
        return f"{self.value} {self.unit}".strip()

    def to_dict(self) -> dict[str, Any]:
        if self.value is None:
            return {"value": None, "unit": self.unit, "not_measurable": self.why_not}
        return {"value": self.value, "unit": self.unit}


NVML_FIELDS = {  # name -> unit
    "driver_version": "",
    "cuda_driver_version": "",
    "max_sm_clock_mhz": "MHz",
    "max_memory_clock_mhz": "MHz",
    "power_limit_w": "W",
}


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as PyTorch sees it, NVML's readings, and its catalogue entry."""

    index: int
    name: str
    memory_bytes: int
    multiprocessors: int
    compute_capability: tuple[int, int]
    cuda_runtime: str | None  # torch.version.cuda
    nvml: Mapping[str, Reading]  # NVML_FIELDS, each a value or why not
    datasheet: DeviceSpec | None  # match_device(name)

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / 2**30

    def to_dict(self) -> dict[str, Any]:
        major, minor = self.compute_capability
        return {
            "index": self.index,
            "name": self.name,
            "memory_bytes": self.memory_bytes,
            "memory_gib": self.memory_gib,
            "multiprocessors": self.multiprocessors,
            "compute_capability": f"{major}.{minor}",
            "cuda_runtime": self.cuda_runtime,
            **{key: reading.to_dict() for key, reading in self.nvml.items()},
            "datasheet": None if self.datasheet is None else self.datasheet.to_dict(),
        }


@dataclass(frozen=True)
class MachineReport:
    """Everything ``cnnlab hw`` shows."""

    cpu: CpuInfo
    gpus: tuple[GpuInfo, ...]
    torch: TorchBuild
    gpu_note: str | None  # why no GPU is listed, when none is
    cpu_datasheet: DeviceSpec | None  # the CPU's catalogue entry, if it has one
    context: Mapping[str, Any]  # cnnlab version, git commit, python, platform

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "version": 1,
            "cpu": self.cpu.to_dict(),
            "cpu_datasheet": None if self.cpu_datasheet is None else self.cpu_datasheet.to_dict(),
            "torch": self.torch.to_dict(),
            "gpus": [gpu.to_dict() for gpu in self.gpus],
            "gpu_note": self.gpu_note,
            "context": dict(self.context),
        }

    def __repr__(self) -> str:
        gpus = ", ".join(gpu.name for gpu in self.gpus) or "no GPU"
        return f"MachineReport(cpu={self.cpu.model!r}, gpus=[{gpus}], torch={self.torch.version})"


def machine_report(catalog: Iterable[DeviceSpec] | None = None) -> MachineReport:
    """This machine's CPU, PyTorch build and CUDA GPUs, matched against ``catalog``."""
    devices = tuple(load_catalog() if catalog is None else catalog)
    cpu = cpu_info()
    gpus = gpu_infos(devices)
    git = git_commit()
    return MachineReport(
        cpu=cpu,
        gpus=gpus,
        torch=torch_build(),
        gpu_note=None if gpus else no_gpu_reason(),
        cpu_datasheet=match_device(cpu.model, devices),
        context={
            "cnnlab_version": __version__,
            "git_commit": git["commit"],
            "git_dirty": git["dirty"],
            "python_version": platform.python_version(),
            "platform": platform.platform(),
        },
    )


def parse_cpuinfo(
    text: str, *, architecture: str | None = None, usable_threads: int | None = None
) -> CpuInfo:
    """A ``CpuInfo`` from the text of ``/proc/cpuinfo`` (x86 or Arm Linux).

    Sockets count distinct ``physical id``s, cores distinct (``physical id``, ``core id``)
    pairs (or the sum of ``cpu cores`` per socket), threads the ``processor`` entries; a count
    the text does not give is None. The SIMD list is x86's where the text has ``flags``, Arm's
    where it has ``Features``.
    """
    blocks = [_fields(block) for block in re.split(r"\n\s*\n", text) if block.strip()]
    processors = [block for block in blocks if "processor" in block]
    first = processors[0] if processors else {}
    everything: dict[str, str] = {}
    for block in reversed(blocks):  # the first occurrence of a key wins
        everything.update(block)
    sockets = {p["physical id"] for p in processors if "physical id" in p}
    cores = {(p.get("physical id"), p["core id"]) for p in processors if "core id" in p}
    if not cores and sockets and all("cpu cores" in p for p in processors):
        per_socket = {p["physical id"]: _int(p["cpu cores"]) for p in processors}
        core_count = sum(v for v in per_socket.values() if v is not None) or None
    else:
        core_count = len(cores) or None
    flags = cpu_flags(text)
    features = X86_FEATURES if "flags" in first else ARM_FEATURES if "Features" in first else {}
    model = next(
        (
            everything[key]
            for key in ("model name", "Model", "Hardware", "cpu model")
            if key in everything
        ),
        None,
    )
    return CpuInfo(
        model=model or cpu_name(),
        vendor=first.get("vendor_id"),
        architecture=architecture,
        sockets=len(sockets) or None,
        cores=core_count,
        threads=len(processors) or None,
        usable_threads=usable_threads,
        simd=tuple((name, name in flags) for name in features),
        flags=flags,
    )


def cpu_info(cpuinfo_path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CPU; counts fall back to ``os.cpu_count()`` where /proc is missing."""
    try:
        text = Path(cpuinfo_path).read_text(errors="replace")
    except OSError:
        text = ""
    info = parse_cpuinfo(
        text, architecture=platform.machine() or None, usable_threads=_usable_threads()
    )
    if info.threads is None:
        info = replace(info, threads=os.cpu_count())
    return info


def parse_torch_config(show: str, parallel: str = "") -> dict[str, str | None]:
    """BLAS, LAPACK, MKL, oneDNN, OpenMP and the parallel backend, from PyTorch's own text.

    ``show`` is ``torch.__config__.show()``, ``parallel`` is ``torch.__config__.parallel_info()``;
    whatever is not mentioned is None.
    """
    text = f"{show}\n{parallel}"

    def find(pattern: str) -> str | None:
        found = re.search(pattern, text)
        return found.group(1).strip() if found else None

    openmp = re.search(r"OpenMP (\d+)(?: \(a\.k\.a\. OpenMP ([\d.]+)\))?", text)
    openmp_text = None
    if openmp:
        openmp_text = (
            f"{openmp.group(2)} ({openmp.group(1)})" if openmp.group(2) else openmp.group(1)
        )
    return {
        "blas": find(r"\bBLAS_INFO=([^,\s]+)"),
        "lapack": find(r"\bLAPACK_INFO=([^,\s]+)"),
        "mkl": find(r"Math Kernel Library Version (\d[\d.]*)"),
        "onednn": find(r"(?:MKL-DNN|oneDNN)\s+v?(\d[\w.]*)"),
        "openmp": openmp_text,
        "parallel_backend": find(r"ATen parallel backend: ([^\n]+)"),
    }


def torch_build() -> TorchBuild:
    """How this PyTorch was built (BLAS, oneDNN, OpenMP, CUDA) and its thread counts."""
    config = parse_torch_config(torch.__config__.show(), torch.__config__.parallel_info())
    capability = getattr(torch.backends.cpu, "get_cpu_capability", None)
    cudnn = None
    if torch.version.cuda is not None and torch.backends.cudnn.is_available():
        cudnn = torch.backends.cudnn.version()
    return TorchBuild(
        version=torch.__version__,
        cpu_capability=capability() if capability is not None else None,
        threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(),
        cuda=torch.version.cuda,
        cudnn=cudnn,
        **config,
    )


def no_gpu_reason() -> str:
    """Why PyTorch sees no CUDA GPU here, in one line."""
    base = "no CUDA GPU visible to PyTorch"
    if torch.version.cuda is None:
        why = f"this PyTorch build has no CUDA support (torch {torch.__version__})"
    elif os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        why = f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU"
    else:
        why = (
            f"PyTorch is built for CUDA {torch.version.cuda} but finds no device "
            "(no NVIDIA GPU, or its driver is not loaded)"
        )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        why += "; Apple's MPS backend is available (device='mps')"
    return f"{base}: {why}"


def gpu_infos(catalog: Iterable[DeviceSpec] | None = None) -> tuple[GpuInfo, ...]:
    """Every CUDA device PyTorch sees; empty when there is none."""
    if not torch.cuda.is_available():
        return ()
    devices = tuple(load_catalog() if catalog is None else catalog)
    infos = []
    with nvml_session() as nvml:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            infos.append(gpu_from_properties(index, props, nvml(props, index), devices))
    return tuple(infos)


def gpu_from_properties(
    index: int,
    props: Any,
    readings: Mapping[str, Reading],
    catalog: Iterable[DeviceSpec] | None = None,
) -> GpuInfo:
    """A ``GpuInfo`` from ``torch.cuda.get_device_properties(index)`` and NVML's readings."""
    return GpuInfo(
        index=index,
        name=props.name,
        memory_bytes=int(props.total_memory),
        multiprocessors=int(props.multi_processor_count),
        compute_capability=(int(props.major), int(props.minor)),
        cuda_runtime=torch.version.cuda,
        nvml=dict(readings),
        datasheet=match_device(props.name, catalog),
    )


def nvml_unavailable(why: str) -> dict[str, Reading]:
    """Every NVML field as not measurable, for one reason."""
    return {key: Reading(None, unit, why) for key, unit in NVML_FIELDS.items()}


@contextlib.contextmanager
def nvml_session() -> Iterator[Callable[[Any, int], dict[str, Reading]]]:
    """Yields ``read(props, index) -> readings``; NVML is initialised once, if it can be."""
    pynvml, why = _start_nvml()
    if pynvml is None:
        yield lambda props, index: nvml_unavailable(why)
        return
    try:
        yield lambda props, index: read_nvml(pynvml, props, index)
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _start_nvml() -> tuple[Any, str]:
    """The initialised pynvml module, or None and the reason."""
    try:
        import pynvml  # nvidia-ml-py, optional: imported only here
    except ImportError:
        return None, "pynvml not installed"
    try:
        pynvml.nvmlInit()
    except Exception as error:  # pynvml.NVMLError and its subclasses
        return None, f"NVML did not start: {error}"
    return pynvml, ""


def read_nvml(pynvml: Any, props: Any, index: int) -> dict[str, Reading]:
    """NVML's driver, CUDA driver, clocks and power limit for one device (NVML initialised).

    The device is found by its PCI address where PyTorch gives one, since PyTorch's and
    NVML's numbering differ under ``CUDA_VISIBLE_DEVICES``; each field that fails says why.
    """
    try:
        handle = _nvml_handle(pynvml, props, index)
    except Exception as error:
        return nvml_unavailable(f"NVML does not know this device: {error}")

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def cuda_version(value: int) -> str:
        return f"{value // 1000}.{value % 1000 // 10}"  # NVML encodes 12.4 as 12040

    reads: dict[str, Callable[[], Any]] = {
        "driver_version": lambda: text(pynvml.nvmlSystemGetDriverVersion()),
        "cuda_driver_version": lambda: cuda_version(pynvml.nvmlSystemGetCudaDriverVersion()),
        "max_sm_clock_mhz": lambda: float(
            pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        ),
        "max_memory_clock_mhz": lambda: float(
            pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        ),
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
    }
    readings = {}
    for key, read in reads.items():
        try:
            readings[key] = Reading(read(), NVML_FIELDS[key])
        except Exception as error:  # NVMLError_NotSupported, NoPermission, ...
            readings[key] = Reading(None, NVML_FIELDS[key], f"NVML: {error}")
    return readings


def _nvml_handle(pynvml: Any, props: Any, index: int) -> Any:
    pci = [getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id")]
    if all(isinstance(value, int) for value in pci):
        domain, bus, device = pci
        return pynvml.nvmlDeviceGetHandleByPciBusId(f"{domain:08x}:{bus:02x}:{device:02x}.0")
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def _fields(block: str) -> dict[str, str]:
    fields = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _usable_threads() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()
