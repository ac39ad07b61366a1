"""The machine report: /proc/cpuinfo and torch config parsing, NVML fallbacks, `cnnlab hw`."""

import json
import os
import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from cnnlab.bench.machine import (
    NVML_FIELDS,
    Reading,
    cpu_info,
    gpu_from_properties,
    gpu_infos,
    machine_report,
    no_gpu_reason,
    nvml_session,
    nvml_unavailable,
    parse_cpuinfo,
    parse_torch_config,
    read_nvml,
)
from cnnlab.cli.hw import gpu_table, hw_app
from cnnlab.runtime.devices import cpu_name

SKYLAKE_FLAGS = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f avx512dq avx512_vnni"
SAPPHIRE_FLAGS = SKYLAKE_FLAGS + " avx512_bf16 amx_bf16 amx_tile amx_int8"
HASWELL_FLAGS = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2"


def x86_cpuinfo(flags, sockets=2, cores=2, threads_per_core=2, core_ids=True):
    """A /proc/cpuinfo text: processors numbered socket by socket, siblings last."""
    blocks, processor = [], 0
    for _thread in range(threads_per_core):
        for socket in range(sockets):
            for core in range(cores):
                lines = [
                    f"processor\t: {processor}",
                    "vendor_id\t: GenuineIntel",
                    "model name\t: Intel(R) Xeon(R) Gold 6430",
                    f"physical id\t: {socket}",
                    f"siblings\t: {cores * threads_per_core}",
                    f"cpu cores\t: {cores}",
                    f"flags\t\t: {flags}",
                ]
                if core_ids:
                    lines.insert(4, f"core id\t\t: {core}")
                blocks.append("\n".join(lines))
                processor += 1
    return "\n\n".join(blocks) + "\n"


RASPBERRY_PI_4 = "\n\n".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU part\t: 0xd08"
    for i in range(4)
) + ("\n\nHardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n")


def simd(info):
    return dict(info.simd)


def test_cpuinfo_with_avx512_and_amx():
    info = parse_cpuinfo(x86_cpuinfo(SAPPHIRE_FLAGS), architecture="x86_64", usable_threads=5)
    assert (info.sockets, info.cores, info.threads, info.usable_threads) == (2, 4, 8, 5)
    assert info.model == "Intel(R) Xeon(R) Gold 6430" and info.vendor == "GenuineIntel"
    assert all(simd(info).values())
    assert info.has("avx512dq") and not info.has("sve")


def test_cpuinfo_without_avx512_or_amx():
    info = parse_cpuinfo(x86_cpuinfo(HASWELL_FLAGS, sockets=1, cores=4))
    features = simd(info)
    assert [name for name, present in features.items() if present] == [
        "sse4_2",
        "fma",
        "avx",
        "avx2",
    ]
    assert not features["avx512f"] and not features["amx_tile"] and not features["avx512_bf16"]
    assert (info.sockets, info.cores, info.threads) == (1, 4, 8)


def test_cpuinfo_with_avx512_but_no_amx():
    features = simd(parse_cpuinfo(x86_cpuinfo(SKYLAKE_FLAGS)))
    assert features["avx512f"] and features["avx512_vnni"]
    assert not features["avx512_bf16"] and not features["amx_int8"]


def test_cores_from_cpu_cores_when_core_ids_are_missing():
    info = parse_cpuinfo(x86_cpuinfo(HASWELL_FLAGS, sockets=2, cores=3, core_ids=False))
    assert (info.sockets, info.cores, info.threads) == (2, 6, 12)


def test_arm_cpuinfo_uses_its_features_and_model_line():
    info = parse_cpuinfo(RASPBERRY_PI_4, architecture="aarch64")
    assert info.model == "Raspberry Pi 4 Model B Rev 1.1"
    assert (info.sockets, info.cores, info.threads) == (None, None, 4)
    assert simd(info)["asimd"] and not simd(info)["asimddp"]
    assert "avx2" not in simd(info)


def test_empty_cpuinfo_falls_back_to_the_platform():
    info = parse_cpuinfo("")
    assert info.model == cpu_name()  # /proc/cpuinfo's model name, or the platform's
    assert (info.sockets, info.cores, info.threads, info.simd) == (None, None, None, ())


def test_parse_torch_config_on_fake_text():
    show = (
        "PyTorch built with:\n  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product "
        "Build 20240605 for Intel(R) 64 architecture applications\n"
        "  - Intel(R) MKL-DNN v3.5.3 (Git Hash 66f0cb9eb66affd2da3bf5f8d897376f04aae6af)\n"
        "  - OpenMP 201511 (a.k.a. OpenMP 4.5)\n"
        "  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, LAPACK_INFO=mkl, USE_CUDA=0, \n"
    )
    parallel = "ATen/Parallel:\n\tat::get_num_threads() : 8\nATen parallel backend: OpenMP\n"
    assert parse_torch_config(show, parallel) == {
        "blas": "mkl",
        "lapack": "mkl",
        "mkl": "2024.2",
        "onednn": "3.5.3",
        "openmp": "4.5 (201511)",
        "parallel_backend": "OpenMP",
    }
    assert set(parse_torch_config("").values()) == {None}


def test_the_real_machine_report_runs_here():
    report = machine_report()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["format"] == "cnnlab-machine-report"
    assert data["torch"]["version"] == torch.__version__
    assert data["torch"]["threads"] == torch.get_num_threads()
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    processors = sum(line.startswith("processor") for line in lines)
    assert report.cpu.threads == (processors or os.cpu_count())
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert len(report.gpus) == len(data["gpus"]) == gpus
    assert (report.gpu_note is None) == (gpus > 0)  # a note says why only when none is listed
    assert "MachineReport(" in repr(report)


def test_without_a_gpu_the_report_says_why(no_cuda):
    report = machine_report()
    assert report.gpus == () and report.to_dict()["gpus"] == []
    assert report.gpu_note == no_gpu_reason()
    assert report.gpu_note.startswith("no CUDA GPU visible to PyTorch: ")


@pytest.mark.parametrize(
    ("build", "visible", "why"),
    [
        (None, None, "this PyTorch build has no CUDA support (torch "),
        ("12.4", "", "CUDA_VISIBLE_DEVICES='' hides every GPU"),
        ("12.4", "-1", "CUDA_VISIBLE_DEVICES='-1' hides every GPU"),
        ("12.4", None, "PyTorch is built for CUDA 12.4 but finds no device (no NVIDIA GPU, or"),
        ("12.4", "0", "PyTorch is built for CUDA 12.4 but finds no device (no NVIDIA GPU, or"),
    ],
)
def test_the_reason_for_no_gpu_names_the_cause(monkeypatch, no_cuda, build, visible, why):
    monkeypatch.setattr(torch.version, "cuda", build)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert no_gpu_reason().startswith(f"no CUDA GPU visible to PyTorch: {why}")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert no_gpu_reason().endswith("; Apple's MPS backend is available (device='mps')")


def test_hw_command_says_there_is_no_gpu(no_cuda):
    result = CliRunner().invoke(hw_app, [])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"GPU {no_gpu_reason()}" in text
    assert "GPU 0:" not in text  # no GPU table
    # The SIMD table shows what /proc/cpuinfo says, feature by feature.
    for feature, present in cpu_info().simd:
        assert re.search(rf"\b{feature} {'yes' if present else 'no'}\b", text), feature


def test_hw_command_json_parses():
    result = CliRunner().invoke(hw_app, ["--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"cpu", "torch", "gpus", "gpu_note", "context"} <= set(data)
    assert data["cpu"]["model"]


def test_without_pynvml_each_field_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    with nvml_session() as read:
        readings = read(None, 0)
    assert set(readings) == set(NVML_FIELDS)
    assert {str(r) for r in readings.values()} == {"not measurable here (pynvml not installed)"}
    assert readings["power_limit_w"].to_dict() == {
        "value": None,
        "unit": "W",
        "not_measurable": "pynvml not installed",
    }


def fake_pynvml():
    """A stand-in for nvidia-ml-py: an H200 whose memory clock NVML cannot report."""

    class NVMLError(Exception):
        pass

    module = types.ModuleType("pynvml")
    module.NVML_CLOCK_SM, module.NVML_CLOCK_MEM = 1, 2
    module.nvmlDeviceGetHandleByPciBusId = lambda bus: f"handle {bus}"
    module.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    module.nvmlSystemGetCudaDriverVersion = lambda: 12040

    def max_clock(handle, clock):
        if clock == module.NVML_CLOCK_MEM:
            raise NVMLError("Not Supported")
        return 1980

    module.nvmlDeviceGetMaxClockInfo = max_clock
    module.nvmlDeviceGetEnforcedPowerLimit = lambda handle: 700_000  # milliwatts
    return module


def h200_properties():
    return SimpleNamespace(
        name="NVIDIA H200",
        total_memory=150_121_545_728,
        multi_processor_count=132,
        major=9,
        minor=0,
        pci_domain_id=0,
        pci_bus_id=0x1B,
        pci_device_id=0,
    )


def test_nvml_readings_and_a_gpu_from_its_properties():
    props = h200_properties()
    readings = read_nvml(fake_pynvml(), props, 0)
    assert readings["driver_version"] == Reading("550.54.15")
    assert readings["cuda_driver_version"].value == "12.4"
    assert str(readings["max_sm_clock_mhz"]) == "1980 MHz"
    assert str(readings["power_limit_w"]) == "700 W"
    assert str(readings["max_memory_clock_mhz"]) == "not measurable here (NVML: Not Supported)"
    gpu = gpu_from_properties(0, props, readings)
    assert gpu.datasheet.name == "H200" and gpu.compute_capability == (9, 0)
    assert gpu.memory_gib == pytest.approx(139.8, abs=0.1)
    data = json.loads(json.dumps(gpu.to_dict()))
    assert data["compute_capability"] == "9.0" and data["power_limit_w"]["value"] == 700


def test_a_gpu_table_renders_nvml_gaps():
    gpu = gpu_from_properties(1, h200_properties(), nvml_unavailable("pynvml not installed"))
    console = Console(width=120, record=True)
    console.print(gpu_table(gpu))
    text = console.export_text()
    assert "GPU 1: NVIDIA H200" in text and "compute capability 9.0" in text
    assert re.search(r"power limit +not measurable here \(pynvml not installed\)", text)
    assert "H200 (2024): FP32 67 TFLOP/s" in text


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to PyTorch")
def test_gpu_fields_agree_with_torch():
    gpus = gpu_infos()
    assert len(gpus) == torch.cuda.device_count()
    for gpu in gpus:
        props = torch.cuda.get_device_properties(gpu.index)
        assert gpu.name == torch.cuda.get_device_name(gpu.index)
        assert gpu.memory_bytes == props.total_memory
        assert gpu.multiprocessors == props.multi_processor_count
        assert gpu.compute_capability == torch.cuda.get_device_capability(gpu.index)
        assert set(gpu.nvml) == set(NVML_FIELDS)
    result = CliRunner().invoke(hw_app, [])
    assert result.exit_code == 0 and gpus[0].name in result.output
