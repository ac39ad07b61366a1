"""`cnnlab hw` (this machine) and `cnnlab hw catalog` (the devices of the lecture and since)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape

from cnnlab.bench.catalog import (
    PACKAGED,
    UNITS,
    DeviceSpec,
    effectiveness,
    load_catalog,
    plot_catalog,
)
from cnnlab.bench.machine import ARM_FEATURES, X86_FEATURES, GpuInfo, MachineReport, machine_report
from cnnlab.cli.common import WholeTable, out, output_errors, print_json, user_errors
from cnnlab.runtime.files import default_output_dir

hw_app = typer.Typer(
    name="hw",
    help="This machine (CPU flags, cores, PyTorch build, GPUs) and the device catalogue.",
    invoke_without_command=True,
    add_completion=False,
    rich_markup_mode=None,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CATALOG_PNG = "catalog.png"
FEATURE_NOTES = {**X86_FEATURES, **ARM_FEATURES}


@hw_app.callback()
@user_errors
def hw_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """This machine: CPU model, cores, SIMD flags, the PyTorch build, each GPU and its peaks."""
    if ctx.invoked_subcommand is not None:
        return
    report = machine_report()
    if json_output:
        print_json(report.to_dict())
        return
    for table in machine_tables(report):
        out.print(table)


@hw_app.command("catalog")
@user_errors
def catalog_command(
    catalog: Annotated[
        Path | None,
        typer.Option(
            "--catalog",
            help="A JSON file of devices (devices.json's format): added, or replacing by name.",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help=f"Folder for {CATALOG_PNG} (default runs/hw-catalog-YYYYmmdd-HHMMSS)."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """The device catalogue: datasheet peaks, bandwidth, TDP, price, GFLOPS/W and GFLOPS/$."""
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out must be a folder for {CATALOG_PNG}. Received: --out {out_dir}")
    devices = load_catalog(catalog)
    folder = default_output_dir("hw-catalog") if out_dir is None else out_dir
    with output_errors("--out", folder):
        png = plot_catalog(devices, folder / CATALOG_PNG)
    if json_output:
        print_json(
            {
                "units": UNITS,
                "png": str(png),
                "devices": [
                    {**spec.to_dict(), "effectiveness": effectiveness(spec)} for spec in devices
                ],
            }
        )
        return
    out.print(catalog_table(devices))
    out.print(CATALOG_LEGEND)
    added = sorted({spec.origin for spec in devices if spec.origin != PACKAGED})
    for origin in added:
        out.print(f"* from {escape(origin)}")
    out.print(f"Wrote {escape(str(png))}: FLOP/s per watt and per dollar over the years.")


def catalog_table(devices: tuple[DeviceSpec, ...]) -> WholeTable:
    """One row per device; numbers never wrap, the device name does on narrow terminals."""
    table = WholeTable(
        title="Devices for machine learning (datasheet figures)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=0,  # the box's column divider is a space already
    )
    table.add_column("device", overflow="fold")
    for header in CATALOG_COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for spec in devices:
        ratios = effectiveness(spec)
        table.add_row(
            escape(spec.name) + ("*" if spec.origin != PACKAGED else ""),
            str(spec.year),
            _number(spec.peak_fp32_tflops),
            _number(spec.peak_fp16_tflops),
            _number(spec.peak_int8_tops),
            _number(spec.memory_bandwidth_gbs),
            _number(spec.tdp_w),
            _price(spec.price_usd),
            _pair(ratios, "eta", "w"),
            _pair(ratios, "mu", "usd"),
        )
    return table


CATALOG_COLUMNS = ("year", "FP32", "FP16", "INT8", "GB/s", "W", "US$", "GFLOPS/W", "GFLOPS/$")
CATALOG_LEGEND = (
    "FP32 and FP16 (FP16 or BF16) peaks in TFLOP/s, INT8 in TOPS, memory bandwidth in GB/s, "
    "TDP in W, launch price in US$. GFLOPS/W (eta) and GFLOPS/$ (mu): FP32 / the best "
    "low-precision peak (the larger of FP16/BF16 and INT8; GOP/s for INT8). -: no such figure, "
    "or not public. Datasheet peaks (dense; an FMA counts 2 FLOPs), not measurements; every "
    "figure's source is in --json."
)


def machine_tables(report: MachineReport) -> list[WholeTable]:
    """The report as rich tables: CPU, its SIMD features, the PyTorch build, the GPUs."""
    cpu, build = report.cpu, report.torch
    machine = _grid("This machine")
    arch = ", ".join(escape(v) for v in (cpu.architecture, cpu.vendor) if v)
    machine.add_row("CPU", escape(cpu.model) + (f" ({arch})" if arch else ""))
    machine.add_row("topology", _topology(report))
    if report.cpu_datasheet is not None:
        machine.add_row("datasheet", _peaks(report.cpu_datasheet))
    machine.add_row("PyTorch", f"{build.version}; CPU kernels: {build.cpu_capability or 'unknown'}")
    machine.add_row(
        "threads",
        f"{build.threads} intra-op, {build.interop_threads} inter-op "
        f"({build.parallel_backend or 'unknown backend'})",
    )
    mkl = f" (MKL {build.mkl})" if build.mkl else ""
    machine.add_row("BLAS", f"{build.blas or 'unknown'}{mkl}, LAPACK {build.lapack or 'unknown'}")
    machine.add_row("oneDNN", build.onednn or "not built in")
    machine.add_row("OpenMP", build.openmp or "not built in")
    cudnn = f", cuDNN {build.cudnn}" if build.cudnn else ""
    machine.add_row("CUDA", f"{build.cuda}{cudnn}" if build.cuda else "none (a CPU-only build)")
    if report.gpu_note:
        machine.add_row("GPU", escape(report.gpu_note))
    tables = [machine]
    if cpu.simd:
        simd = WholeTable(
            title="SIMD features (from /proc/cpuinfo)", title_justify="left", box=None
        )
        simd.add_column("feature", no_wrap=True)
        simd.add_column("here", no_wrap=True)
        simd.add_column("what it brings")
        for name, present in cpu.simd:
            here = "[green]yes[/]" if present else "[dim]no[/]"
            simd.add_row(name, here, FEATURE_NOTES.get(name, ""))
        tables.append(simd)
    tables.extend(gpu_table(gpu) for gpu in report.gpus)
    return tables


def gpu_table(gpu: GpuInfo) -> WholeTable:
    major, minor = gpu.compute_capability
    table = _grid(f"GPU {gpu.index}: {escape(gpu.name)}")
    table.add_row(
        "device",
        f"{gpu.memory_gib:.1f} GiB, {gpu.multiprocessors} multiprocessors, "
        f"compute capability {major}.{minor}",
    )
    table.add_row("CUDA runtime", f"{gpu.cuda_runtime} (PyTorch's)")
    labels = {
        "driver_version": "driver",
        "cuda_driver_version": "driver's CUDA",
        "max_sm_clock_mhz": "max SM clock",
        "max_memory_clock_mhz": "max memory clock",
        "power_limit_w": "power limit",
    }
    for key, label in labels.items():
        table.add_row(label, escape(str(gpu.nvml[key])))
    if gpu.datasheet is None:
        table.add_row("datasheet", "not in the catalogue (add it with cnnlab hw catalog --catalog)")
    else:
        table.add_row("datasheet", _peaks(gpu.datasheet))
    return table


def _grid(title: str) -> WholeTable:
    table = WholeTable(title=title, title_justify="left", show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    return table


def _topology(report: MachineReport) -> str:
    cpu = report.cpu

    def count(value: int | None, noun: str) -> str:
        if value is None:
            return f"? {noun}s"
        return f"{value} {noun}{'' if value == 1 else 's'}"

    text = f"{count(cpu.sockets, 'socket')}, {count(cpu.cores, 'core')}, "
    text += f"{count(cpu.threads, 'thread')}"
    if cpu.usable_threads is not None:
        text += f"; this process may run on {cpu.usable_threads}"
    return text


def _peaks(spec: DeviceSpec) -> str:
    parts = [
        f"{label} {_number(value)} {unit}"
        for label, value, unit in (
            ("FP32", spec.peak_fp32_tflops, "TFLOP/s"),
            ("FP16/BF16", spec.peak_fp16_tflops, "TFLOP/s"),
            ("INT8", spec.peak_int8_tops, "TOPS"),
            ("memory", spec.memory_bandwidth_gbs, "GB/s"),
            ("TDP", spec.tdp_w, "W"),
        )
        if value is not None
    ]
    return f"{escape(spec.name)} ({spec.year}): " + ", ".join(parts)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}".removesuffix(".0")
    return f"{value:.3g}"


def _price(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _pair(ratios: dict[str, Any], letter: str, per: str) -> str:
    fp32 = ratios[f"{letter}_fp32_gflops_per_{per}"]
    low = [
        value
        for key in (f"{letter}_fp16_gflops_per_{per}", f"{letter}_int8_gops_per_{per}")
        if (value := ratios[key]) is not None
    ]
    return f"{_number(fp32)}/{_number(max(low) if low else None)}"
