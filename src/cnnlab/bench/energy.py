"""Energy over an interval, measured by the hardware's own counters, never estimated.

Two sources, one meter (``EnergyMeter``):

- **RAPL** (Intel, and AMD on Linux) through the kernel's powercap interface:
  ``/sys/class/powercap/intel-rapl:N`` is a CPU package, ``intel-rapl:N:M`` a sub-zone of it
  named ``dram``, ``core`` or ``uncore``. Each zone has an ``energy_uj`` counter (microjoules)
  that wraps around at ``max_energy_range_uj``. ``RaplMeter`` reads every zone at the start,
  at every sample (a background thread, every ``interval_seconds``) and at the stop, and adds
  ``max_energy_range_uj`` whenever a counter is smaller than at the sample before.
- **NVML** (NVIDIA GPUs, Volta and newer): ``nvmlDeviceGetTotalEnergyConsumption`` is the
  board's energy in millijoules since the driver loaded, a 64-bit counter that does not wrap in
  practice; ``NvmlMeter`` reads it at the start and at the stop.

Limits, stated rather than hidden:

- A wrap is recognised only as "the counter went down since the last sample". If a counter
  advances by a full ``max_energy_range_uj`` or more between two samples, whole ranges are lost.
  Typical ranges are ~262 kJ (package) and ~65 kJ (DRAM), so sampling every second is safe up to
  tens of kilowatts; sampling less often than the range divided by the power undercounts.
- RAPL measures the whole package (every process and the idle floor), not this process; DRAM
  is a separate domain (added to the total); ``core``, ``uncore`` and ``psys`` overlap with the
  package and are reported but not added. Counters update about every millisecond.
- Recent kernels make ``energy_uj`` readable by root only (CVE-2020-8694); virtual machines
  usually expose no powercap zones at all. Then the source says "not measurable here (why)".
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import torch

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
DEFAULT_INTERVAL_SECONDS = 1.0
NOT_MEASURABLE = "not measurable here"
_ZONE_PATTERN = re.compile(r"intel-rapl:(\d+)(?::(\d+))?")
# Zones that overlap with a package zone: reported, but not added to a total.
_OVERLAPPING_ZONES = ("core", "uncore", "psys")


def not_measurable(reason: str) -> str:
    """The one phrase every unmeasured number is printed with."""
    return f"{NOT_MEASURABLE} ({reason})"


@dataclass(frozen=True, repr=False)
class EnergyReading:
    """Energy of one source over an interval, or the reason it could not be measured."""

    source: str  # "cpu package-0", "cpu package-0 dram", "gpu 0 NVIDIA H100 80GB HBM3", ...
    kind: str  # "rapl" or "nvml"
    seconds: float
    joules: float | None = None
    reason: str | None = None  # why not measured; None when measured
    in_total: bool = True  # False for zones that overlap with another (core, uncore, psys)

    def __post_init__(self) -> None:
        assert (self.joules is None) != (self.reason is None), "a value or a reason, not both"

    @property
    def measured(self) -> bool:
        return self.joules is not None

    @property
    def mean_watts(self) -> float | None:
        if self.joules is None or self.seconds <= 0:
            return None
        return self.joules / self.seconds

    def describe(self) -> str:
        """``12.3 J (mean 4.56 W)`` or ``not measurable here (why)``."""
        if self.joules is None:
            return not_measurable(str(self.reason))
        watts = self.mean_watts
        power = f" (mean {watts:.3g} W)" if watts is not None else ""
        overlap = "" if self.in_total else ", overlaps another zone: not added to the total"
        return f"{self.joules:.4g} J{power}{overlap}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "measured": self.measured,
            "joules": self.joules,
            "seconds": self.seconds,
            "mean_watts": self.mean_watts,
            "in_total": self.in_total,
            "reason": None if self.reason is None else not_measurable(self.reason),
        }

    def __repr__(self) -> str:
        return f"EnergyReading({self.source!r}, {self.describe()})"


@dataclass(frozen=True, repr=False)
class EnergyReport:
    """What every source measured over one interval of ``seconds``."""

    seconds: float
    readings: tuple[EnergyReading, ...]

    def joules(self, kind: str | None = None) -> float | None:
        """The sum over measured, non-overlapping readings (of ``kind``); None if none measured."""
        values = [
            r.joules
            for r in self.readings
            if r.joules is not None and r.in_total and kind in (None, r.kind)
        ]
        return math.fsum(values) if values else None

    def mean_watts(self, kind: str | None = None) -> float | None:
        joules = self.joules(kind)
        return None if joules is None or self.seconds <= 0 else joules / self.seconds

    def reasons(self, kind: str | None = None) -> list[str]:
        """``source: not measurable here (why)`` for each unmeasured reading (of ``kind``)."""
        return [
            f"{r.source}: {not_measurable(str(r.reason))}"
            for r in self.readings
            if r.reason is not None and kind in (None, r.kind)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "joules": self.joules(),
            "mean_watts": self.mean_watts(),
            "readings": [r.to_dict() for r in self.readings],
        }

    def __repr__(self) -> str:
        joules = self.joules()
        total = f"{joules:.4g} J" if joules is not None else NOT_MEASURABLE
        return f"EnergyReport({total} in {self.seconds:.2f} s, {len(self.readings)} source(s))"


class EnergyUnavailable(Exception):
    """A source cannot be measured here; the message says why."""


def read_counter(path: Path) -> int:
    """One integer sysfs value (``energy_uj``, ``max_energy_range_uj``)."""
    text = Path(path).read_text().strip()
    try:
        return int(text)
    except ValueError:
        raise EnergyUnavailable(f"{path} holds {text!r}, not an integer counter") from None


def _read_or_explain(path: Path, root: Path) -> int:
    """``read_counter``, with every way it fails turned into an ``EnergyUnavailable`` reason."""
    try:
        return read_counter(path)
    except PermissionError:
        raise EnergyUnavailable(
            f"{path} is readable by root only (permission denied); run as root, or let this "
            f"user read it: sudo chmod a+r {root}/intel-rapl:*/energy_uj"
        ) from None
    except FileNotFoundError:
        raise EnergyUnavailable(f"{path} does not exist") from None
    except OSError as error:
        raise EnergyUnavailable(f"cannot read {path}: {error.strerror or error}") from None


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone: a package (``intel-rapl:0``) or a sub-zone (``intel-rapl:0:0``)."""

    zone: str
    name: str  # "package-0", "dram", "core", "uncore", "psys"
    source: str  # "cpu package-0", "cpu package-0 dram"
    path: Path
    max_energy_range_uj: int

    @property
    def in_total(self) -> bool:
        return self.name not in _OVERLAPPING_ZONES


def find_rapl_zones(root: str | Path = DEFAULT_POWERCAP_ROOT) -> list[RaplZone]:
    """The RAPL zones under ``root``, each checked readable; ``EnergyUnavailable`` says why not."""
    root = Path(root)
    if not root.is_dir():
        raise EnergyUnavailable(
            f"{root} does not exist: this kernel exposes no power-capping (RAPL) interface, "
            "as usual in virtual machines and outside Linux"
        )
    found: dict[str, tuple[Path, re.Match[str]]] = {}
    # sysfs lists every zone at the top (sub-zones as links) and sub-zones inside their package.
    folders = [root, *(p for p in root.glob("intel-rapl:*") if p.is_dir())]
    for path in (child for folder in folders for child in folder.iterdir()):
        match = _ZONE_PATTERN.fullmatch(path.name)
        if match is not None and path.is_dir() and path.name not in found:
            found[path.name] = (path, match)
    if not found:
        raise EnergyUnavailable(
            f"{root} has no intel-rapl:* zones: no RAPL driver (intel_rapl) is loaded, "
            "as usual in virtual machines"
        )
    names: dict[str, str] = {}
    for zone, (path, _) in found.items():
        try:
            names[zone] = path.joinpath("name").read_text().strip()
        except OSError as error:
            raise EnergyUnavailable(f"cannot read {path / 'name'}: {error}") from None
    zones = []
    order = sorted(found, key=lambda z: tuple(int(g or -1) for g in found[z][1].groups()))
    for zone in order:
        path, match = found[zone]
        parent = f"intel-rapl:{match.group(1)}"
        if match.group(2) is None:
            source = f"cpu {names[zone]}"
        else:
            source = f"cpu {names.get(parent, parent)} {names[zone]}"
        max_range = _read_or_explain(path / "max_energy_range_uj", root)
        _read_or_explain(path / "energy_uj", root)  # readable now, or the reason why not
        if max_range <= 0:
            raise EnergyUnavailable(f"{path / 'max_energy_range_uj'} is {max_range}, not > 0")
        zones.append(RaplZone(zone, names[zone], source, path, max_range))
    return zones


def _check_interval(interval_seconds: float | None) -> None:
    ok = isinstance(interval_seconds, (int, float)) and not isinstance(interval_seconds, bool)
    if interval_seconds is not None and not (ok and 0 < interval_seconds < math.inf):
        raise ValueError(
            "interval_seconds must be a positive number of seconds, or None (sample on demand "
            f"only). Received: interval_seconds={interval_seconds!r}"
        )


class _Metered:
    """``with meter:`` is ``meter.start()`` ... ``meter.stop()``."""

    def __enter__(self):
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RaplMeter(_Metered):
    """Joules per RAPL zone between ``start()`` and ``stop()`` (or over a ``with`` block).

    With ``interval_seconds`` set, a daemon thread samples every zone that often, so counter
    wraps are seen one at a time; with None, only ``start``, ``sample()`` and ``stop`` read them.
    """

    kind = "rapl"

    def __init__(
        self,
        root: str | Path = DEFAULT_POWERCAP_ROOT,
        *,
        interval_seconds: float | None = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        _check_interval(interval_seconds)
        self.root = Path(root)
        self.interval_seconds = interval_seconds
        self.reason: str | None = None  # why RAPL is not measurable here, once started
        self.samples = 0
        self._zones: list[RaplZone] = []
        self._last: dict[str, int] = {}
        self._total_uj: dict[str, int] = {}
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self.readings: tuple[EnergyReading, ...] | None = None  # set by stop()

    def start(self) -> RaplMeter:
        if self._started_at is not None:
            raise RuntimeError("this RaplMeter was started already; make a new one")
        self._started_at = time.perf_counter()
        try:
            self._zones = find_rapl_zones(self.root)
            for zone in self._zones:
                self._last[zone.zone] = _read_or_explain(zone.path / "energy_uj", self.root)
                self._total_uj[zone.zone] = 0
        except EnergyUnavailable as why:
            self.reason, self._zones = str(why), []
            return self
        if self.interval_seconds is not None:
            self._thread = threading.Thread(
                target=self._sample_until_stopped, name="cnnlab-rapl-sampler", daemon=True
            )
            self._thread.start()
        return self

    def _sample_until_stopped(self) -> None:
        while not self._stopping.wait(self.interval_seconds):
            self.sample()

    def sample(self) -> None:
        """Read every zone now and add what it counted since the last read (wraps included)."""
        with self._lock:
            for zone in self._zones:
                if zone.zone in self._failed:
                    continue
                try:
                    now = _read_or_explain(zone.path / "energy_uj", self.root)
                except EnergyUnavailable as why:
                    self._failed[zone.zone] = f"it became unreadable during the interval: {why}"
                    continue
                counted = now - self._last[zone.zone]
                if counted < 0:  # the counter wrapped around (once, assuming frequent samples)
                    counted += zone.max_energy_range_uj
                self._total_uj[zone.zone] += counted
                self._last[zone.zone] = now
            self.samples += 1

    def stop(self) -> tuple[EnergyReading, ...]:
        """Stop sampling, take the last reading and return the joules of each zone."""
        if self._started_at is None:
            raise RuntimeError("stop() before start(): start the RaplMeter first")
        if self.readings is not None:
            return self.readings
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
        self.sample()
        seconds = time.perf_counter() - self._started_at
        if self.reason is not None:
            reading = EnergyReading("cpu (RAPL)", self.kind, seconds, reason=self.reason)
            self.readings = (reading,)
            return self.readings
        self.readings = tuple(
            EnergyReading(
                zone.source,
                self.kind,
                seconds,
                joules=None if zone.zone in self._failed else self._total_uj[zone.zone] / 1e6,
                reason=self._failed.get(zone.zone),
                in_total=zone.in_total,
            )
            for zone in self._zones
        )
        return self.readings

    def __repr__(self) -> str:
        state = f"not measurable: {self.reason}" if self.reason else f"{len(self._zones)} zone(s)"
        return f"RaplMeter({str(self.root)!r}, {state})"


def _import_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise EnergyUnavailable(
            "pynvml is not installed: pip install nvidia-ml-py to measure GPU energy"
        ) from None
    return pynvml


class NvmlMeter:
    """Joules of one NVIDIA GPU between ``start()`` and ``stop()``, from its energy counter.

    ``index`` is NVML's numbering; ``uuid`` (as torch reports it) picks the same GPU when
    ``CUDA_VISIBLE_DEVICES`` renumbers CUDA's devices, and wins over ``index`` when given.
    """

    kind = "nvml"

    def __init__(self, index: int = 0, *, uuid: str | None = None) -> None:
        self.index, self.uuid = index, uuid
        self.source = f"gpu {index}"
        self.reason: str | None = None
        self._pynvml: ModuleType | None = None
        self._handle: Any = None
        self._start_mj: int | None = None
        self._started_at: float | None = None
        self.readings: tuple[EnergyReading, ...] | None = None

    def _call(self, what: str, *args: Any) -> Any:
        pynvml = self._pynvml
        assert pynvml is not None
        try:
            return getattr(pynvml, what)(*args)
        except getattr(pynvml, "NVMLError", OSError) as error:
            hint = ""
            if what == "nvmlDeviceGetTotalEnergyConsumption":
                hint = "; the energy counter needs a Volta or newer GPU"
            raise EnergyUnavailable(f"NVML {what}: {error}{hint}") from None

    def _find_handle(self) -> Any:
        if self.uuid is not None:
            try:
                return self._call("nvmlDeviceGetHandleByUUID", self.uuid)
            except EnergyUnavailable:
                pass  # an older driver or another spelling: fall back to the index
        return self._call("nvmlDeviceGetHandleByIndex", self.index)

    def start(self) -> NvmlMeter:
        if self._started_at is not None:
            raise RuntimeError("this NvmlMeter was started already; make a new one")
        self._started_at = time.perf_counter()
        try:
            self._pynvml = _import_pynvml()
            self._call("nvmlInit")
            self._handle = self._find_handle()
            name = self._call("nvmlDeviceGetName", self._handle)
            self.source = f"gpu {self.index} {name.decode() if isinstance(name, bytes) else name}"
            self._start_mj = int(self._call("nvmlDeviceGetTotalEnergyConsumption", self._handle))
        except EnergyUnavailable as why:
            self.reason = str(why)
        return self

    def stop(self) -> tuple[EnergyReading, ...]:
        if self._started_at is None:
            raise RuntimeError("stop() before start(): start the NvmlMeter first")
        if self.readings is not None:
            return self.readings
        seconds = time.perf_counter() - self._started_at
        joules = None
        if self.reason is None:
            try:
                end_mj = int(self._call("nvmlDeviceGetTotalEnergyConsumption", self._handle))
                assert self._start_mj is not None
                joules = (end_mj - self._start_mj) / 1000.0  # millijoules; 64 bits: no wrap
            except EnergyUnavailable as why:
                self.reason = f"it became unreadable during the interval: {why}"
        if self._pynvml is not None and self._handle is not None:
            with contextlib.suppress(EnergyUnavailable):  # the reading is taken already
                self._call("nvmlShutdown")
        self.readings = (
            EnergyReading(self.source, self.kind, seconds, joules=joules, reason=self.reason),
        )
        return self.readings

    def __repr__(self) -> str:
        state = f"not measurable: {self.reason}" if self.reason else "ready"
        return f"NvmlMeter({self.source!r}, {state})"


def _cuda_uuid(index: int) -> str | None:
    """The GPU's UUID as NVML spells it (``GPU-...``), if torch knows it."""
    try:
        uuid = torch.cuda.get_device_properties(index).uuid
    except (AttributeError, RuntimeError, AssertionError):
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


class EnergyMeter(_Metered):
    """Every energy source this machine has for a run on ``device``, read in one go.

    The CPU's RAPL zones are always metered (the host works in a GPU run too); a CUDA device
    adds its GPU through NVML. A source that cannot be read is reported with its reason.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        powercap_root: str | Path = DEFAULT_POWERCAP_ROOT,
        interval_seconds: float | None = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self.device = torch.device(device)
        self.rapl = RaplMeter(powercap_root, interval_seconds=interval_seconds)
        self.nvml: NvmlMeter | None = None
        self._gpu_reason: str | None = None
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else 0
            uuid = _cuda_uuid(index) if torch.cuda.is_available() else None
            self.nvml = NvmlMeter(index, uuid=uuid)
        elif not torch.cuda.is_available():
            self._gpu_reason = "no CUDA GPU"
        self._started_at: float | None = None
        self.report: EnergyReport | None = None  # set by stop()

    def start(self) -> EnergyMeter:
        self._started_at = time.perf_counter()
        self.rapl.start()
        if self.nvml is not None:
            self.nvml.start()
        return self

    def sample(self) -> None:
        """Sample the wrapping counters now (the background thread does this periodically)."""
        self.rapl.sample()

    def stop(self) -> EnergyReport:
        if self._started_at is None:
            raise RuntimeError("stop() before start(): start the EnergyMeter first")
        if self.report is not None:
            return self.report
        readings = list(self.rapl.stop())
        if self.nvml is not None:
            readings.extend(self.nvml.stop())
        seconds = time.perf_counter() - self._started_at
        if self._gpu_reason is not None:
            readings.append(EnergyReading("gpu (NVML)", "nvml", seconds, reason=self._gpu_reason))
        self.report = EnergyReport(seconds, tuple(readings))
        return self.report

    def __repr__(self) -> str:
        return f"EnergyMeter(device={str(self.device)!r}, {self.rapl!r}, {self.nvml!r})"
