"""measure_ceilings on the CPU at toy sizes: rates are positive and finite, the median of the
repeats is what is reported (a fake clock and a fake timer show it), FLOPs are 2mkn, the JSON is
written atomically and reads back, ceiling_for maps precisions, and bad input is named."""

import json
import math
import os
import statistics
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import cnnlab.bench.ceilings as ceilings_module
import cnnlab.bench.datasheet as datasheet_module
import cnnlab.runtime.contention as contention_module
from cnnlab.bench.ceilings import (
    MIN_REPEATS,
    Ceilings,
    CopyRate,
    MatmulRate,
    ceiling_for,
    ceilings_filename,
    load_ceilings,
    matmul_flops,
    measure_ceilings,
    measure_matmul,
    time_repeats,
    write_ceilings,
)
from cnnlab.bench.datasheet import compare_to_datasheet
from cnnlab.cli.bench import bench_app
from cnnlab.runtime.contention import CpuCounters, busy_note, others_cpu_share, steal_cpu_share
from cnnlab.runtime.devices import matmul_tf32, tf32_enabled

runner = CliRunner()
TOY = {"size": 96, "buffer_bytes": 2 << 20, "repeats": 4, "budget_seconds": 0.02}


@pytest.fixture(scope="module")
def cpu_ceilings():
    return measure_ceilings("cpu", **TOY)


def test_cpu_rates_are_positive_finite_and_medians(cpu_ceilings):
    assert cpu_ceilings.device == "cpu"
    assert list(cpu_ceilings.matmul) == ["fp32", "bf16"]
    for rate in cpu_ceilings.matmul.values():
        assert rate.size == 96
        assert MIN_REPEATS <= rate.repeats <= 4 and rate.repeats == len(rate.times)
        assert rate.seconds == statistics.median(rate.times)
        assert math.isfinite(rate.flops_per_second) and rate.flops_per_second > 0
        assert rate.flops_per_second == pytest.approx(2 * 96**3 / rate.seconds, rel=1e-12)
    copy = cpu_ceilings.copy
    assert copy.buffer_bytes == 2 << 20
    assert copy.seconds == statistics.median(copy.times)
    assert copy.bytes_per_second == pytest.approx(2 * copy.buffer_bytes / copy.seconds, rel=1e-12)
    assert cpu_ceilings.bandwidth_bytes_per_second == copy.bytes_per_second
    context = cpu_ceilings.context
    for key in ("cnnlab_version", "git_commit", "torch_version", "device_name", "threads"):
        assert key in context
    assert context["threads"] == torch.get_num_threads()


def test_the_flop_count_is_2mkn_by_hand_and_by_pytorch():
    assert matmul_flops(2, 3, 4) == 48  # 2*4 outputs, each 3 multiplies and 3 adds
    a, b = torch.ones(5, 7), torch.ones(7, 3)
    with FlopCounterMode(display=False) as counter:
        torch.matmul(a, b)
    assert counter.get_total_flops() == matmul_flops(5, 7, 3) == 210


def test_time_repeats_with_a_fake_clock_stops_at_the_budget_after_three():
    now = [0.0]
    durations = iter([1.0, 1.0, 9.0, 1.0, 5.0, 2.0, 2.0])  # warm-up, calibration, repeats

    def call():
        now[0] += next(durations)

    times, calls = time_repeats(
        call, torch.device("cpu"), repeats=10, budget_seconds=3.0, clock=lambda: now[0]
    )
    # calibration: one call of 1 s, budget/repeats = 0.3 s -> one call per repeat; the budget
    # (3 s) is spent after the first repeat, but a median needs three.
    assert calls == 1
    assert times == (9.0, 1.0, 5.0)


def test_measure_matmul_reports_the_median_of_the_repeats(monkeypatch):
    monkeypatch.setattr(
        ceilings_module, "time_repeats", lambda *args, **kwargs: ((5e-3, 1e-3, 3e-3), 2)
    )
    rate = measure_matmul("fp32", torch.device("cpu"), size=64, repeats=3, budget_seconds=1.0)
    assert rate.seconds == 3e-3
    assert rate.flops_per_second == pytest.approx(2 * 64**3 / 3e-3)
    assert (rate.repeats, rate.calls_per_repeat, rate.times) == (3, 2, (5e-3, 1e-3, 3e-3))


def test_the_share_other_processes_took_by_hand():
    start = CpuCounters(busy=100.0, total=400.0, own=10.0)
    # 2 CPUs for 10 s: 20 s in all; 14 s busy, of which this process 8 s -> others 6 s = 30 %
    end = CpuCounters(busy=114.0, total=420.0, own=18.0)
    assert others_cpu_share(start, end) == pytest.approx(0.3)
    assert others_cpu_share(None, end) is None and others_cpu_share(end, end) is None
    assert "other processes used 30% of their time" in busy_note(0.3)
    assert busy_note(0.05) is None and busy_note(None) is None
    # of the others' 6 s, 5 s were steal time: the hypervisor's, 25 % of the 20 s
    start, end = replace(start, steal=2.0), replace(end, steal=7.0)
    assert others_cpu_share(start, end) == pytest.approx(0.3)
    assert steal_cpu_share(start, end) == pytest.approx(0.25)
    assert steal_cpu_share(None, end) is None and steal_cpu_share(end, end) is None
    assert "used 30% of their time during the measurement (25% of it steal time" in busy_note(
        0.3, 0.25
    )
    assert "steal" not in busy_note(0.3, 0.0) and busy_note(0.05, 0.05) is None


class FakeProcStat:
    """Stands in for ``Path("/proc/stat")``: its text, or an OSError where there is none."""

    def __init__(self, text):
        self.text = text

    def __call__(self, path):
        assert path == "/proc/stat"
        return self

    def read_text(self):
        if self.text is None:
            raise FileNotFoundError(2, "No such file or directory", "/proc/stat")
        return self.text


def test_cpu_counters_from_proc_stat_by_hand(monkeypatch):
    # user nice system idle iowait irq softirq steal (guest, guest_nice: inside user already)
    stat = "cpu  100 20 30 400 50 6 7 8 3 0\ncpu0 50 10 15 200 25 3 4 4 1 0\n"
    monkeypatch.setattr(contention_module, "Path", FakeProcStat(stat))
    tick = os.sysconf("SC_CLK_TCK")
    before = time.process_time()
    counters = CpuCounters.read()
    assert counters.busy == pytest.approx((100 + 20 + 30 + 6 + 7 + 8) / tick)  # 171 ticks
    assert counters.total == pytest.approx((171 + 400 + 50) / tick)  # plus idle and iowait
    assert counters.steal == pytest.approx(8 / tick)  # the eighth number
    assert before <= counters.own <= time.process_time()  # this process's CPU time
    monkeypatch.setattr(contention_module, "Path", FakeProcStat(None))  # not Linux
    assert CpuCounters.read() is None
    monkeypatch.setattr(contention_module, "Path", FakeProcStat("cpu  1 2 3\n"))  # too few fields
    assert CpuCounters.read() is None


def test_json_is_written_atomically_and_reads_back(cpu_ceilings, tmp_path):
    path = write_ceilings(cpu_ceilings, tmp_path / "out")
    assert path.name == "ceilings-cpu.json"
    assert [p.name for p in path.parent.iterdir()] == ["ceilings-cpu.json"]  # no temp files
    data = json.loads(path.read_text())
    assert data["format"] == "cnnlab-ceilings"
    assert data["bandwidth_bytes_per_second"] == cpu_ceilings.bandwidth_bytes_per_second
    assert [row["name"] for row in data["datasheet"]] == [
        "matmul fp32",
        "matmul bf16",
        "copy bandwidth",
    ]
    again = load_ceilings(path)
    assert again.matmul == cpu_ceilings.matmul and again.copy == cpu_ceilings.copy
    assert ceilings_filename("cuda:1") == "ceilings-cuda-1.json"
    with pytest.raises(
        ValueError, match=r"directory must be a folder. Received: directory=.*existing file"
    ):
        write_ceilings(cpu_ceilings, path)


def _made_up(device: str) -> Ceilings:
    rates = {"fp32": 1e12, "tf32": 8e12, "bf16": 16e12}
    if device == "cpu":
        rates.pop("tf32")
    matmul = {name: MatmulRate(rate, 1024, 0.001, 3) for name, rate in rates.items()}
    return Ceilings(device, "Made-up", matmul, copy=CopyRate(1e11, 1 << 30, 0.02, 3))


def test_ceiling_for_maps_a_training_precision_to_its_matmul_rate():
    cpu, cuda = _made_up("cpu"), _made_up("cuda")
    assert ceiling_for(cpu, "fp32") == 1e12
    assert ceiling_for(cpu, "bf16") == 16e12
    assert ceiling_for(cpu, "fp16") is None  # not measured
    before = tf32_enabled()
    with matmul_tf32(False):
        assert ceiling_for(cuda, "fp32") == 1e12
        with matmul_tf32(True):
            assert tf32_enabled()
            assert ceiling_for(cuda, "fp32") == 8e12  # fp32 training runs its matmuls in TF32
            assert ceiling_for(cpu, "fp32") == 1e12  # no TF32 on a CPU
    assert tf32_enabled() == before  # restored
    with pytest.raises(ValueError, match=r"precision must be one of fp32, bf16, fp16. .*'int8'"):
        ceiling_for(cpu, "int8")


def test_datasheet_percentages_by_hand():
    spec = SimpleNamespace(peak_fp32_tflops=4.0, peak_fp16_tflops=32.0, memory_bandwidth_gbs=200)
    rows = {row.name: row for row in compare_to_datasheet(_made_up("cuda"), spec)}
    assert rows["matmul fp32"].percent == pytest.approx(25.0)  # 1 of 4 TFLOP/s
    assert rows["matmul tf32"].datasheet is None  # the catalogue has no TF32 figure
    assert rows["matmul bf16"].percent == pytest.approx(50.0)  # 16 of 32
    assert rows["copy bandwidth"].percent == pytest.approx(50.0)  # 100 of 200 GB/s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtypes": ("tf32",)}, r"dtypes must be some of fp32, bf16 on cpu. Received: .*'tf32'"),
        ({"size": 0}, r"size must be a positive integer. Received: size=0"),
        ({"repeats": -1}, r"repeats must be a positive integer. Received: repeats=-1"),
        ({"budget_seconds": 0}, r"budget_seconds must be > 0. Received: budget_seconds=0"),
        ({"buffer_bytes": 0}, r"buffer_bytes must be a positive integer. Received"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        measure_ceilings("cpu", **kwargs)


def test_cuda_without_cuda_is_refused(no_cuda):
    with pytest.raises(ValueError, match=r"device='cuda' but CUDA is not available"):
        measure_ceilings("cuda")


def test_cli_prints_the_table_and_writes_json(tmp_path, monkeypatch):
    monkeypatch.setattr(datasheet_module, "datasheet_spec", lambda name: None)
    args = ["ceilings", "--device", "cpu", "--size", "64", "--buffer-mib", "1"]
    args += ["--repeats", "3", "--budget", "0.01", "--out", str(tmp_path)]
    result = runner.invoke(bench_app, args)
    assert result.exit_code == 0, result.output
    assert "matmul fp32" in result.output and "copy bandwidth" in result.output
    assert "no datasheet figure" in result.output
    assert (tmp_path / "ceilings-cpu.json").is_file()
    result = runner.invoke(bench_app, [*args[:-2], "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["matmul"]) == {"fp32", "bf16"} and data["file"] is None


def test_cli_cuda_without_cuda_is_one_line_and_status_2(no_cuda):
    result = runner.invoke(bench_app, ["ceilings", "--device", "cuda"])
    assert result.exit_code == 2
    assert "CUDA is not available" in result.output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_ceilings_measure_every_dtype_and_restore_tf32():
    before = tf32_enabled()
    ceilings = measure_ceilings("cuda", size=1024, buffer_bytes=64 << 20, budget_seconds=0.1)
    assert list(ceilings.matmul) == ["fp32", "tf32", "bf16", "fp16"]
    assert all(rate.flops_per_second > 0 for rate in ceilings.matmul.values())
    assert ceilings.bandwidth_bytes_per_second > 0
    assert tf32_enabled() == before
