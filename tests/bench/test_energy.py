"""Energy meters: RAPL on a fake powercap tree (wraps, sampling, unreadable counters), NVML on a
fake pynvml module, and the combined EnergyMeter's per-source report."""

import os
import sys
import time
import types

import pytest
import torch

from cnnlab.bench import energy
from cnnlab.bench.energy import (
    EnergyMeter,
    EnergyReading,
    EnergyReport,
    NvmlMeter,
    RaplMeter,
    find_rapl_zones,
)

PACKAGE_RANGE = 262_143_328_850  # a real package's max_energy_range_uj
DRAM_RANGE = 65_712_999_613


def make_zone(folder, name, energy_uj, max_range):
    folder.mkdir(parents=True)
    (folder / "name").write_text(f"{name}\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_range}\n")
    return folder


def set_energy(folder, energy_uj):
    (folder / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path):
    """A package with a DRAM sub-zone, laid out as sysfs does (sub-zone also at the top level)."""
    root = tmp_path / "powercap"
    package = make_zone(root / "intel-rapl:0", "package-0", 1_000_000, PACKAGE_RANGE)
    dram = make_zone(package / "intel-rapl:0:0", "dram", 500_000, DRAM_RANGE)
    (root / "intel-rapl:0:0").symlink_to(dram)
    (root / "intel-rapl").mkdir()  # the control type itself, not a zone
    return types.SimpleNamespace(root=root, package=package, dram=dram)


def by_source(readings):
    return {reading.source: reading for reading in readings}


def test_zones_are_found_with_their_names_and_ranges(powercap):
    zones = find_rapl_zones(powercap.root)
    assert [(z.zone, z.name, z.source) for z in zones] == [
        ("intel-rapl:0", "package-0", "cpu package-0"),
        ("intel-rapl:0:0", "dram", "cpu package-0 dram"),
    ]
    assert [z.max_energy_range_uj for z in zones] == [PACKAGE_RANGE, DRAM_RANGE]


def test_energy_increase_is_joules_per_zone(powercap):
    meter = RaplMeter(powercap.root, interval_seconds=None).start()
    set_energy(powercap.package, 1_000_000 + 12_500_000)  # +12.5 J
    set_energy(powercap.dram, 500_000 + 2_250_000)  # +2.25 J
    readings = by_source(meter.stop())
    assert readings["cpu package-0"].joules == pytest.approx(12.5, abs=1e-12)
    assert readings["cpu package-0 dram"].joules == pytest.approx(2.25, abs=1e-12)
    seconds = readings["cpu package-0"].seconds
    assert seconds > 0
    assert readings["cpu package-0"].mean_watts == pytest.approx(12.5 / seconds)
    report = EnergyReport(seconds, tuple(readings.values()))
    assert report.joules() == pytest.approx(14.75)
    assert report.joules("nvml") is None


def test_a_counter_that_wrapped_adds_its_range(powercap):
    set_energy(powercap.package, PACKAGE_RANGE - 1_000_000)  # 1 J before the wrap
    meter = RaplMeter(powercap.root, interval_seconds=None).start()
    set_energy(powercap.package, 3_000_000)  # end < start: wrapped, then 3 J more
    readings = by_source(meter.stop())
    assert readings["cpu package-0"].joules == pytest.approx(4.0, abs=1e-9)
    assert readings["cpu package-0 dram"].joules == 0


def test_several_wraps_are_counted_when_sampled_between_them(powercap):
    meter = RaplMeter(powercap.root, interval_seconds=None).start()
    value, expected_uj = 1_000_000, 0
    for _ in range(3):  # three full trips round the counter, each seen by a sample
        step = PACKAGE_RANGE // 2 + 7
        for _ in range(2):
            value = (value + step) % PACKAGE_RANGE
            expected_uj += step
            set_energy(powercap.package, value)
            meter.sample()
    readings = by_source(meter.stop())
    assert expected_uj > 3 * PACKAGE_RANGE  # more than three full ranges in all
    assert readings["cpu package-0"].joules == pytest.approx(expected_uj / 1e6, rel=1e-12)
    assert meter.samples == 7  # six on demand, one at stop


def test_the_background_thread_samples_and_stops(powercap):
    meter = RaplMeter(powercap.root, interval_seconds=0.01).start()
    deadline = time.monotonic() + 10
    while meter.samples < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert meter.samples >= 2
    meter.stop()
    assert meter._thread is not None and not meter._thread.is_alive()


def test_a_context_manager_measures_its_block(powercap):
    with RaplMeter(powercap.root, interval_seconds=None) as meter:
        set_energy(powercap.package, 4_000_000)
    assert by_source(meter.readings)["cpu package-0"].joules == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("layout", "reason"),
    [
        ("absent", "does not exist: this kernel exposes no power-capping"),
        ("empty", "has no intel-rapl:* zones"),
        ("no-file", "energy_uj does not exist"),
        ("garbage", "not an integer counter"),
    ],
)
def test_no_rapl_is_not_measurable_with_the_reason(tmp_path, layout, reason):
    root = tmp_path / "powercap"
    if layout != "absent":
        root.mkdir()
    if layout in ("no-file", "garbage"):
        zone = make_zone(root / "intel-rapl:0", "package-0", 0, PACKAGE_RANGE)
        if layout == "no-file":
            (zone / "energy_uj").unlink()
        else:
            set_energy(zone, "n/a")
    meter = RaplMeter(root, interval_seconds=0.01).start()
    (reading,) = meter.stop()
    assert not reading.measured and reading.joules is None and reading.mean_watts is None
    assert reason in reading.reason
    assert reading.describe().startswith("not measurable here (")
    assert meter._thread is None  # nothing to sample


def test_a_root_only_counter_says_permission_denied(powercap, monkeypatch):
    (powercap.package / "energy_uj").chmod(0o000)
    if os.access(powercap.package / "energy_uj", os.R_OK):  # root reads it anyway: simulate
        real = energy.read_counter

        def denied(path):
            if path.name == "energy_uj":
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(energy, "read_counter", denied)
    (reading,) = RaplMeter(powercap.root, interval_seconds=None).start().stop()
    assert "readable by root only (permission denied)" in reading.reason
    assert "energy_uj" in reading.reason


def test_a_counter_that_becomes_unreadable_loses_only_its_zone(powercap, monkeypatch):
    meter = RaplMeter(powercap.root, interval_seconds=None).start()
    real = energy.read_counter

    def dram_gone(path):
        if "intel-rapl:0:0" in str(path):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path)

    monkeypatch.setattr(energy, "read_counter", dram_gone)
    set_energy(powercap.package, 2_000_000)
    readings = by_source(meter.stop())
    assert readings["cpu package-0"].joules == pytest.approx(1.0)
    assert "became unreadable during the interval" in readings["cpu package-0 dram"].reason


def test_overlapping_zones_are_reported_but_not_added(powercap):
    core = make_zone(powercap.package / "intel-rapl:0:1", "core", 0, PACKAGE_RANGE)
    (powercap.root / "intel-rapl:0:1").symlink_to(core)
    meter = RaplMeter(powercap.root, interval_seconds=None).start()
    set_energy(core, 5_000_000)
    set_energy(powercap.package, 1_000_000 + 8_000_000)
    readings = meter.stop()
    report = EnergyReport(readings[0].seconds, readings)
    assert by_source(readings)["cpu package-0 core"].joules == pytest.approx(5.0)
    assert not by_source(readings)["cpu package-0 core"].in_total
    assert report.joules() == pytest.approx(8.0)  # package only (DRAM counted 0 J)


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_seconds must be a positive number"):
        RaplMeter(interval_seconds=0)


def fake_pynvml(energy_mj, name="Fake GPU 80GB"):
    """A stand-in pynvml: the counter advances by the next value of ``energy_mj`` per read."""
    module = types.ModuleType("pynvml")
    counter = iter(energy_mj)
    calls = []

    class NVMLError(Exception):
        pass

    def record(what, result=None):
        def call(*args):
            calls.append((what, args))
            return result() if callable(result) else result

        return call

    module.NVMLError = NVMLError
    module.nvmlInit = record("init")
    module.nvmlShutdown = record("shutdown")
    module.nvmlDeviceGetHandleByIndex = record("by-index", "handle")
    module.nvmlDeviceGetName = record("name", name)
    module.nvmlDeviceGetTotalEnergyConsumption = record("energy", lambda: next(counter))
    module.calls = calls
    return module


def test_nvml_energy_is_millijoules_to_joules(monkeypatch):
    fake = fake_pynvml([50_000_000_123, 50_000_450_623])  # +450,500 mJ
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    (reading,) = NvmlMeter(0).start().stop()
    assert reading.source == "gpu 0 Fake GPU 80GB" and reading.kind == "nvml"
    assert reading.joules == pytest.approx(450.5, abs=1e-9)
    assert [what for what, _ in fake.calls] == [
        "init",
        "by-index",
        "name",
        "energy",
        "energy",
        "shutdown",
    ]


def test_nvml_without_an_energy_counter_says_why(monkeypatch):
    fake = fake_pynvml([])

    def not_supported(handle):
        raise fake.NVMLError("Not Supported")

    fake.nvmlDeviceGetTotalEnergyConsumption = not_supported
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    (reading,) = NvmlMeter(0).start().stop()
    assert "Not Supported" in reading.reason and "Volta or newer" in reading.reason


def test_nvml_without_pynvml_is_not_measurable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    (reading,) = NvmlMeter(0).start().stop()
    assert reading.describe() == (
        "not measurable here (pynvml is not installed: pip install nvidia-ml-py to measure "
        "GPU energy)"
    )


def test_a_cpu_run_without_cuda_says_no_cuda_gpu(powercap, no_cuda):
    meter = EnergyMeter("cpu", powercap_root=powercap.root, interval_seconds=None).start()
    set_energy(powercap.package, 3_000_000)
    report = meter.stop()
    sources = by_source(report.readings)
    assert set(sources) == {"cpu package-0", "cpu package-0 dram", "gpu (NVML)"}
    assert sources["gpu (NVML)"].describe() == "not measurable here (no CUDA GPU)"
    assert report.joules() == pytest.approx(2.0) and report.joules("rapl") == pytest.approx(2.0)
    assert report.reasons() == ["gpu (NVML): not measurable here (no CUDA GPU)"]
    assert report.to_dict()["readings"][2]["reason"] == "not measurable here (no CUDA GPU)"


def test_a_cpu_run_on_a_cuda_machine_meters_the_cpu_alone(powercap, cuda_reported):
    """The GPU idles through a CPU run: it is neither metered nor reported as missing."""
    meter = EnergyMeter("cpu", powercap_root=powercap.root, interval_seconds=None).start()
    set_energy(powercap.package, 3_000_000)
    report = meter.stop()
    assert [r.source for r in report.readings] == ["cpu package-0", "cpu package-0 dram"]
    assert meter.nvml is None and report.reasons() == []
    assert report.joules() == pytest.approx(2.0)


def test_energy_meter_combines_rapl_and_a_fake_gpu(powercap, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([1_000, 101_000]))  # +100 J
    monkeypatch.setattr(energy, "_cuda_uuid", lambda index: None)
    with EnergyMeter("cuda:0", powercap_root=powercap.root, interval_seconds=None) as meter:
        set_energy(powercap.package, 1_000_000 + 20_000_000)  # +20 J
    report = meter.report
    assert report.joules("nvml") == pytest.approx(100.0)
    assert report.joules("rapl") == pytest.approx(20.0)
    assert report.joules() == pytest.approx(120.0)
    assert report.mean_watts() == pytest.approx(120.0 / report.seconds)
    assert report.reasons() == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU for NVML")
def test_nvml_on_a_real_gpu():
    pytest.importorskip("pynvml", reason="pynvml (nvidia-ml-py) is not installed")
    meter = EnergyMeter("cuda", interval_seconds=None).start()
    a, product = torch.randn(4096, 4096, device="cuda"), torch.empty(4096, 4096, device="cuda")
    busy_until = time.monotonic() + 1.0  # long enough for NVML's counter to advance
    while time.monotonic() < busy_until:
        for _ in range(20):
            torch.mm(a, a, out=product)
        torch.cuda.synchronize()
    (gpu,) = [r for r in meter.stop().readings if r.kind == "nvml"]
    if torch.cuda.get_device_capability(0) < (7, 0):  # NVML's energy counter: Volta or newer
        assert not gpu.measured and "Volta or newer" in gpu.reason
        return
    assert gpu.measured, gpu.reason
    assert gpu.source.startswith("gpu 0 ")
    # Idle to full load, a datacenter GPU draws tens to hundreds of watts: millijoules read as
    # joules (x1000) or the other way round (/1000) would fall far outside.
    assert 5 < gpu.mean_watts < 2000, gpu


def test_a_reading_is_a_value_or_a_reason():
    with pytest.raises(AssertionError):
        EnergyReading("x", "rapl", 1.0)
    reading = EnergyReading("cpu package-0", "rapl", 2.0, joules=10.0)
    assert repr(reading) == "EnergyReading('cpu package-0', 10 J (mean 5 W))"
