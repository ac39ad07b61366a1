"""Measured ceilings beside the datasheet: each as a percentage of the vendor's peak figure."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cnnlab.bench.ceilings import Ceilings


@dataclass(frozen=True)
class DatasheetRow:
    """One measured ceiling beside the datasheet's figure for it, where the catalogue has one."""

    name: str  # "matmul fp32", "copy bandwidth"
    measured: float  # TFLOP/s or GB/s, as ``unit`` says
    unit: str
    datasheet: float | None
    percent: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_DATASHEET_FIELDS = {
    "fp32": "peak_fp32_tflops",
    "tf32": "peak_tf32_tflops",
    "bf16": "peak_fp16_tflops",  # datasheets give one FP16/BF16 tensor figure
    "fp16": "peak_fp16_tflops",
}


def datasheet_spec(name: str) -> Any | None:
    """The catalogue's entry for a device name, or None (no catalogue, or no match)."""
    try:
        from cnnlab.bench.catalog import match_device
    except ImportError:
        return None
    return match_device(name)


def compare_to_datasheet(ceilings: Ceilings, spec: Any | None = None) -> list[DatasheetRow]:
    """Each ceiling as a percentage of the datasheet's peak (``spec`` defaults to the catalogue's
    match for the device name)."""
    spec = datasheet_spec(ceilings.device_name) if spec is None else spec
    rows = []
    for name, rate in ceilings.matmul.items():
        peak = getattr(spec, _DATASHEET_FIELDS[name], None)
        rows.append(_row(f"matmul {name}", rate.flops_per_second / 1e12, "TFLOP/s", peak))
    if ceilings.copy is not None:
        peak = getattr(spec, "memory_bandwidth_gbs", None)
        rows.append(_row("copy bandwidth", ceilings.copy.bytes_per_second / 1e9, "GB/s", peak))
    return rows


def _row(name: str, measured: float, unit: str, peak: float | None) -> DatasheetRow:
    peak = float(peak) if peak else None
    return DatasheetRow(name, measured, unit, peak, 100 * measured / peak if peak else None)
