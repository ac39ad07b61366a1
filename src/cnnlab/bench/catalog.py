"""The device catalogue: the lecture's hardware and what came since, with a source for each figure.

``devices.json`` (packaged) lists GPUs, TPUs, edge accelerators and a CPU with their datasheet
peaks (FP32, FP16/BF16, INT8), memory bandwidth and size, TDP and launch price; the file's
``units`` header fixes the unit of every figure and its ``conventions`` say how peaks are counted
(dense, an FMA is 2 FLOPs). ``load_catalog(extra)`` adds a user's file, whose devices replace
packaged ones of the same name. ``effectiveness`` gives the lecture's two ratios at peak:
``mu = FLOP/s per dollar`` and ``eta = FLOP/s per watt``; ``plot_catalog`` draws both over the
years.
"""

from __future__ import annotations

import functools
import json
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

PACKAGED_FILE = "devices.json"
PACKAGED = "packaged"  # the origin of the packaged entries
KINDS = ("gpu", "tpu", "cpu", "edge")
# Every figure and its unit; devices.json's "units" header must say the same.
UNITS = {
    "peak_fp32_tflops": "TFLOP/s",
    "peak_fp16_tflops": "TFLOP/s",
    "peak_int8_tops": "TOPS",
    "memory_bandwidth_gbs": "GB/s",
    "memory_gb": "GB",
    "tdp_w": "W",
    "price_usd": "USD",
}
SOURCED = ("year", *UNITS)  # the fields that need a citation in "sources"
REQUIRED = ("name", "aliases", "kind", "year", *UNITS, "sources")
OPTIONAL = ("notes", "units")
TOP_LEVEL = ("format", "version", "units", "conventions", "devices")
# Spellings accepted in a "units" field, besides the documented one.
UNIT_SPELLINGS = {
    "TFLOP/s": {"tflop/s", "tflops"},
    "TOPS": {"tops", "top/s"},
    "GB/s": {"gb/s"},
    "GB": {"gb"},
    "W": {"w", "watt", "watts"},
    "USD": {"usd", "us$", "$"},
}
PRECISION_LABELS = {
    "peak_fp32_tflops": "FP32",
    "peak_fp16_tflops": "FP16/BF16",
    "peak_int8_tops": "INT8",
}

PANELS = (  # (denominator, title, y label, why a device is missing)
    ("tdp_w", "η = FLOP/s per watt (peak / TDP)", "GFLOP/s per W (GOP/s for INT8)", "no TDP"),
    (
        "price_usd",
        "μ = FLOP/s per dollar (peak / launch price)",
        "GFLOP/s per US$ (GOP/s for INT8)",
        "no public price",
    ),
)
PLOT_STYLE = {"FP32": ("o", "tab:blue"), "FP16/BF16": ("s", "tab:orange"), "INT8": ("^", "tab:red")}


@dataclass(frozen=True)
class DeviceSpec:
    """One device's datasheet figures; ``None`` where a figure does not exist or is not public.

    Peaks are dense: TFLOP/s for FP32 and FP16/BF16, TOPS for INT8. ``sources`` holds a short
    citation for the year and for every figure, null ones included (saying why they are null).
    """

    name: str
    kind: str  # one of KINDS
    year: int
    peak_fp32_tflops: float | None
    peak_fp16_tflops: float | None
    peak_int8_tops: float | None
    memory_bandwidth_gbs: float | None
    memory_gb: float | None
    tdp_w: float | None
    price_usd: float | None
    sources: Mapping[str, str] = field(hash=False)
    aliases: tuple[str, ...] = ()
    notes: str = ""
    origin: str = PACKAGED  # or the path of the user's catalogue file it came from

    def source(self, figure: str) -> str:
        """The citation for ``figure`` (a field name such as ``"tdp_w"``, or ``"year"``)."""
        if figure not in SOURCED:
            raise ValueError(f"figure must be one of {', '.join(SOURCED)}. Received: {figure!r}")
        return self.sources[figure]

    @property
    def best_low_precision(self) -> tuple[str, float] | None:
        """The larger of the FP16/BF16 and INT8 peaks, as ``(label, tera-ops per second)``."""
        options = [
            (PRECISION_LABELS[name], value)
            for name in ("peak_fp16_tflops", "peak_int8_tops")
            if (value := getattr(self, name)) is not None
        ]
        return max(options, key=lambda option: option[1]) if options else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "kind": self.kind,
            "year": self.year,
            **{name: getattr(self, name) for name in UNITS},
            "notes": self.notes,
            "sources": dict(self.sources),
            "origin": self.origin,
        }

    def __repr__(self) -> str:
        peaks = ", ".join(
            f"{_short(value)} {label}"
            for name, label in PRECISION_LABELS.items()
            if (value := getattr(self, name)) is not None
        )
        power = f", {_short(self.tdp_w)} W" if self.tdp_w is not None else ""
        return f"DeviceSpec({self.name!r}, {self.kind} {self.year}, {peaks}{power})"


def load_catalog(extra: str | Path | None = None) -> tuple[DeviceSpec, ...]:
    """The packaged devices, plus those of the JSON file ``extra`` (same format as devices.json).

    A device in ``extra`` whose name matches a packaged one (case-insensitively) replaces it
    whole; the others are added at the end. Raises ``ValueError`` naming the file, the device,
    the field, the value and what was expected; ``FileNotFoundError`` if ``extra`` is missing.
    """
    packaged = _packaged_catalog()
    if extra is None:
        return packaged
    if not isinstance(extra, (str, Path)):
        raise ValueError(f"extra must be a path to a JSON file. Received: extra={extra!r}")
    path = Path(extra)
    if not path.exists():
        raise FileNotFoundError(f"catalogue file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: is a folder; expected a JSON file of devices")
    added = parse_catalog(path.read_text(encoding="utf-8"), source=str(path))
    merged = {_key(spec.name): spec for spec in packaged}
    merged.update({_key(spec.name): spec for spec in added})
    catalog = tuple(merged.values())
    _check_unique_names(catalog, source=str(path))
    return catalog


def parse_catalog(
    text: str, source: str = "<text>", origin: str | None = None
) -> tuple[DeviceSpec, ...]:
    """Validate a catalogue's JSON text; ``source`` names it in error messages.

    Each device's ``origin`` is ``origin``, by default ``source``.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{source}: not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise ValueError(
            f'{source}: expected a JSON object with a "devices" list, like the packaged '
            f"devices.json. Received: {type(data).__name__}"
            + (f" with keys {sorted(data)}" if isinstance(data, dict) else "")
        )
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise ValueError(
            f"{source}: unknown top-level field {unknown[0]!r}; expected {', '.join(TOP_LEVEL)}"
        )
    if "units" in data:
        _check_units(data["units"], f"{source}: units")
    specs = tuple(
        _parse_device(entry, source, origin or source, number)
        for number, entry in enumerate(data["devices"], 1)
    )
    _check_unique_names(specs, source)
    return specs


def match_device(name: str, catalog: Iterable[DeviceSpec] | None = None) -> DeviceSpec | None:
    """The catalogue entry whose name or alias is ``name`` (case and spacing ignored), or None.

    ``name`` is typically what PyTorch reports (``torch.cuda.get_device_name()``), e.g.
    ``"NVIDIA H200"`` or ``"Tesla V100-SXM2-16GB"``; a CPU model string matches only if listed.
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a device name string. Received: name={name!r}")
    wanted = _key(name)
    for spec in load_catalog() if catalog is None else catalog:
        if wanted in (_key(spec.name), *map(_key, spec.aliases)):
            return spec
    return None


def effectiveness(spec: DeviceSpec) -> dict[str, Any]:
    """The lecture's ratios at datasheet peak: eta = FLOP/s per watt, mu = FLOP/s per dollar.

    In GFLOP/s per W and GFLOP/s per US$ (GOP/s for INT8), for each precision the device has;
    ``None`` where the peak, the TDP or the price is unknown. These are datasheet ratios, not
    measurements: a real workload reaches a fraction of the peak.
    """
    if not isinstance(spec, DeviceSpec):
        raise ValueError(f"spec must be a DeviceSpec. Received: {type(spec).__name__}")
    per = {"w": spec.tdp_w, "usd": spec.price_usd}
    peaks = {
        "fp32_gflops": spec.peak_fp32_tflops,
        "fp16_gflops": spec.peak_fp16_tflops,
        "int8_gops": spec.peak_int8_tops,
    }
    result: dict[str, Any] = {"device": spec.name, "basis": "datasheet"}
    for letter, denominator in (("eta", "w"), ("mu", "usd")):
        for label, peak in peaks.items():
            divisor = per[denominator]
            value = None if peak is None or divisor is None else peak * 1e3 / divisor
            result[f"{letter}_{label}_per_{denominator}"] = value
    low = spec.best_low_precision
    result["best_low_precision"] = None if low is None else low[0]
    result["price_known"] = spec.price_usd is not None
    return result


def plot_catalog(catalog: Iterable[DeviceSpec], path: str | Path) -> Path:
    """FLOP/s per watt (eta) and per dollar (mu) over the years: two log-scale panels, a PNG.

    Each device shows its FP32 peak (circle) and its best low-precision peak (FP16/BF16 square
    or INT8 triangle), joined by a grey line and labelled with its name. Devices without a TDP
    or a public price are named under the panel they are missing from. Written atomically.
    """
    from cnnlab.runtime.figures import new_figure, png_path, save_png

    out = png_path(path)
    specs = list(catalog)
    if not specs:
        raise ValueError("catalog is empty: no device to plot")
    positions = _spread_years(specs)
    figure = new_figure((14, 6.6))
    for ax, (denominator, title, ylabel, why) in zip(figure.subplots(1, 2), PANELS, strict=True):
        labels, missing = [], []
        for spec in specs:
            divisor, points = getattr(spec, denominator), _plot_points(spec)
            if divisor is None or not points:
                missing.append(spec.name if points else f"{spec.name} (no peak)")
                continue
            x, ys = positions[spec.name], [value * 1e3 / divisor for _, value in points]
            if len(ys) == 2:
                ax.plot([x, x], ys, color="0.7", lw=1, zorder=1)
            for (label, _), y in zip(points, ys, strict=True):
                marker, colour = PLOT_STYLE[label]
                ax.scatter(x, y, marker=marker, color=colour, s=42, zorder=3, lw=0.6, ec="white")
            labels.append((x, max(ys), spec.name))
        ax.set_yscale("log")
        ax.set_xlim(min(s.year for s in specs) - 0.8, max(s.year for s in specs) + 2.0)
        ax.set_title(title, fontsize=11)
        ax.set(xlabel="year of launch", ylabel=ylabel)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
        _place_labels(ax, labels)
        ax.legend(handles=_legend_handles(), loc="upper left", fontsize=8.5, framealpha=0.9)
        if missing:
            ax.annotate(
                textwrap.fill(f"not shown ({why}): {', '.join(missing)}", 95),
                xy=(0, 0),
                xycoords="axes fraction",
                xytext=(0, -34),
                textcoords="offset points",
                va="top",
                fontsize=8,
                color="0.35",
            )
    figure.suptitle(
        "Datasheet peaks per watt and per dollar: FP32 and the best low-precision figure",
        fontsize=12,
    )
    return save_png(figure, out)


def _legend_handles() -> list[Any]:
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], ls="", marker=marker, color=colour, ms=7, label=f"{label} peak")
        for label, (marker, colour) in PLOT_STYLE.items()
    ]


def _plot_points(spec: DeviceSpec) -> list[tuple[str, float]]:
    """FP32 and the best low-precision peak, those the device has."""
    points = [("FP32", spec.peak_fp32_tflops)] if spec.peak_fp32_tflops is not None else []
    low = spec.best_low_precision
    return points + ([low] if low is not None else [])


def _spread_years(specs: Sequence[DeviceSpec]) -> dict[str, float]:
    """An x position per device: its year, spread a little where several share a year."""
    by_year: dict[int, list[str]] = {}
    for spec in specs:
        by_year.setdefault(spec.year, []).append(spec.name)
    return {
        name: year + (i - (len(names) - 1) / 2) * 0.3
        for year, names in by_year.items()
        for i, name in enumerate(names)
    }


def _place_labels(ax: Any, labels: list[tuple[float, float, str]]) -> None:
    """Name each device right of its top point, nudging labels up so that none overlap."""
    if not labels:
        return
    logs = [math.log10(y) for _, y, _ in labels]
    low, high = min(logs) - 0.35, max(logs) + 0.45
    ax.set_ylim(10**low, 10**high)
    step = (high - low) * 0.045  # one label's height, in decades
    placed: list[tuple[float, float, float]] = []  # (x, log y, width in years)
    for x, y, name in sorted(labels, key=lambda label: (math.log10(label[1]), label[0])):
        width = 0.16 * len(name) + 0.3
        level = math.log10(y)
        while clash := [p for p in placed if _overlap(p, x, level, width, step)]:
            level = max(p[1] for p in clash) + step
        placed.append((x, level, width))
        moved = abs(level - math.log10(y)) > step / 2
        ax.annotate(
            name,
            xy=(x, y),
            xytext=(x + 0.14, 10**level),
            textcoords="data",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.8},
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6} if moved else None,
        )


def _overlap(
    placed: tuple[float, float, float], x: float, level: float, width: float, step: float
) -> bool:
    px, plevel, pwidth = placed
    return abs(plevel - level) < step and px < x + width and x < px + pwidth


@functools.cache
def _packaged_catalog() -> tuple[DeviceSpec, ...]:
    resource = resources.files("cnnlab.bench").joinpath(PACKAGED_FILE)
    return parse_catalog(resource.read_text(encoding="utf-8"), str(resource), PACKAGED)


def _parse_device(entry: Any, source: str, origin: str, number: int) -> DeviceSpec:
    where = f"{source}: device #{number}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a JSON object. Received: {entry!r:.60}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: 'name' must be a non-empty string. Received: name={name!r}")
    where = f"{source}: device {name!r}"
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(
            f"{where}: unknown field {unknown[0]!r}; expected {', '.join(REQUIRED + OPTIONAL)}"
        )
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        key = missing[0]
        what = f"a number in {UNITS[key]}, or null" if key in UNITS else "see devices.json"
        raise ValueError(f"{where}: missing field {key!r} ({what})")
    if "units" in entry:
        _check_units(entry["units"], f"{where}: units")
    kind = entry["kind"]
    if kind not in KINDS:
        raise ValueError(f"{where}: kind={kind!r}: expected one of {', '.join(KINDS)}")
    year = entry["year"]
    if isinstance(year, bool) or not isinstance(year, int) or not 1940 <= year <= 2100:
        raise ValueError(f"{where}: year={year!r}: expected a calendar year, like 2017")
    aliases = entry["aliases"]
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise ValueError(
            f"{where}: aliases={aliases!r}: expected a list of names, like ['NVIDIA H200']"
        )
    notes = entry.get("notes", "")
    if not isinstance(notes, str):
        raise ValueError(f"{where}: notes={notes!r}: expected a string")
    return DeviceSpec(
        name=name.strip(),
        kind=kind,
        year=year,
        **{key: _parse_figure(entry[key], key, where) for key in UNITS},
        sources=MappingProxyType(_sources(entry["sources"], where)),
        aliases=tuple(a.strip() for a in aliases),
        notes=notes,
        origin=origin,
    )


def _parse_figure(value: Any, key: str, where: str) -> float | None:
    unit = UNITS[key]
    if value is None:
        return None
    if isinstance(value, str):
        raise ValueError(
            f"{where}: {key}={value!r}: expected a number in {unit} (the unit is fixed by the "
            f"catalogue), not a string; write {key}: 10 for 10 {unit}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {key}={value!r}: expected a number in {unit}, or null")
    if key == "price_usd" and value <= 0:
        raise ValueError(
            f"{where}: price_usd={value!r}: a price must be positive, or null when unknown"
        )
    if value <= 0:
        raise ValueError(
            f"{where}: {key}={value!r}: must be a positive number in {unit}, or null where the "
            "device has no such figure"
        )
    return float(value)


def _sources(sources: Any, where: str) -> dict[str, str]:
    if not isinstance(sources, dict):
        raise ValueError(
            f"{where}: sources={sources!r:.60}: expected an object with a citation for each of "
            f"{', '.join(SOURCED)}"
        )
    unknown = sorted(set(sources) - set(SOURCED))
    if unknown:
        raise ValueError(
            f"{where}: sources has an unknown field {unknown[0]!r}; expected {', '.join(SOURCED)}"
        )
    for key in SOURCED:
        text = sources.get(key)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"{where}: sources.{key}={text!r}: every figure needs a source, a short citation "
                "such as 'NVIDIA V100 datasheet' (null figures too: say why they are null)"
            )
    return {key: sources[key].strip() for key in SOURCED}


def _check_units(units: Any, where: str) -> None:
    if not isinstance(units, dict):
        raise ValueError(f"{where}={units!r:.60}: expected an object mapping fields to units")
    for key, unit in units.items():
        if key not in UNITS:
            raise ValueError(
                f"{where}.{key}: unknown field; units are fixed for {', '.join(UNITS)}"
            )
        expected = UNITS[key]
        if not isinstance(unit, str) or (
            unit != expected and unit.strip().casefold() not in UNIT_SPELLINGS[expected]
        ):
            raise ValueError(
                f"{where}.{key}={unit!r}: the catalogue's unit for {key} is {expected!r}; "
                f"convert the figures to {expected}"
            )


def _check_unique_names(catalog: Sequence[DeviceSpec], source: str) -> None:
    """No two devices may share a name or an alias: match_device would be ambiguous."""
    seen: dict[str, tuple[int, str]] = {}
    for index, spec in enumerate(catalog):
        for label in {_key(spec.name), *map(_key, spec.aliases)}:
            other, other_name = seen.setdefault(label, (index, spec.name))
            if other != index:
                raise ValueError(
                    f"{source}: device {spec.name!r}: the name or alias {label!r} is already "
                    f"used by device {other_name!r}; names and aliases must be unique"
                )


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _short(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
