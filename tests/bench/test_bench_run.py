"""bench_run(): a short measured run on digits; energy from a fake powercap tree checked by hand,
"not measurable here" without one, mu/eta/utilisation/cost arithmetic, bad input, and the CLI."""

import json
import math

import pytest
import typer
from typer.testing import CliRunner

import cnnlab.bench.run as bench_module
import cnnlab.train.report as report
from cnnlab.bench.ceilings import Ceilings, MatmulRate
from cnnlab.bench.energy import EnergyMeter
from cnnlab.bench.run import BenchRunConfig, bench_run
from cnnlab.cli.bench_run import bench_run_command
from cnnlab.runtime.devices import cpu_name
from cnnlab.train import default_config

PACKAGE_RANGE = 262_143_328_850
DRAM_RANGE = 65_712_999_613
CEILING = 2.5e11  # FLOP/s in the ceilings file the tests write


@pytest.fixture(autouse=True)
def quick_runs(tmp_path_factory, monkeypatch):
    """A shared dataset cache, and no plots (a second or two per run)."""
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path_factory.getbasetemp() / "cnnlab-home"))
    monkeypatch.setattr(report, "write_plots", lambda *args, **kwargs: [])


def digits(tmp_path, **overrides):
    settings = {"epochs": 1, "batch_size": 256, "threads": 1, "device": "cpu"}
    settings.update(overrides)
    return default_config("lenet-like", "digits", out=str(tmp_path / "run"), **settings)


def write_zone(folder, name, energy_uj, max_range):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "name").write_text(f"{name}\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_range}\n")


@pytest.fixture
def powercap(tmp_path):
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "package-0", PACKAGE_RANGE - 2_000_000, PACKAGE_RANGE)
    write_zone(root / "intel-rapl:0" / "intel-rapl:0:0", "dram", 10_000_000, DRAM_RANGE)
    return root


@pytest.fixture
def ceilings_file(tmp_path):
    rate = MatmulRate(flops_per_second=CEILING, size=512, seconds=0.001, repeats=3)
    ceilings = Ceilings("cpu", cpu_name(), {"fp32": rate}, copy=None, context={"threads": 1})
    path = tmp_path / "ceilings-cpu.json"
    path.write_text(json.dumps(ceilings.to_dict()))
    return path


def test_energy_from_the_counters_is_apportioned_by_hand(
    tmp_path, powercap, ceilings_file, no_cuda
):
    def advance_counters(line):
        if line.startswith("epoch 1/1"):  # after the steps and the evaluation, before the stop
            (powercap / "intel-rapl:0" / "energy_uj").write_text("3000000\n")  # wrapped: +5 J
            dram = powercap / "intel-rapl:0" / "intel-rapl:0:0" / "energy_uj"
            dram.write_text("11500000\n")  # +1.5 J

    config = BenchRunConfig(
        digits(tmp_path), price_usd=2000.0, powercap_root=powercap, ceilings=ceilings_file
    )
    result = bench_run(config, progress=False, print_fn=advance_counters)

    joules = 5.0 + 1.5
    share = result.train_seconds / result.metered_seconds
    assert 0 < share < 1
    images = sum(record["images"] for record in result.train.metrics)
    assert result.images_trained == images == 5 * 256  # 1437 training images, full batches
    assert result.energy_joules.value == pytest.approx(joules)
    assert result.mean_watts.value == pytest.approx(joules / result.metered_seconds)
    assert result.training_joules.value == pytest.approx(joules * share)
    assert result.joules_per_image.value == pytest.approx(joules * share / images)
    assert "apportioned" in result.training_joules.source
    achieved = result.achieved_flops_per_second.value
    flops_per_image = json.loads(result.train.report.read_text())["training_flops_per_image"]
    assert achieved == pytest.approx(flops_per_image * images / result.train_seconds)
    assert result.eta.value == pytest.approx(achieved / (joules / result.metered_seconds))
    assert "measured: mean power of cpu package-0 + cpu package-0 dram" in result.eta.source
    assert result.mu.value == pytest.approx(achieved / 2000.0)
    assert result.price_usd.source == "given (price_usd=2000)"
    assert result.utilisation.value == pytest.approx(100 * achieved / CEILING)
    assert result.cost_usd.missing == "not given: pass usd_per_hour=USD"

    saved = json.loads(result.bench_json.read_text())
    assert saved == json.loads(json.dumps(result.to_dict()))
    assert saved["joules_per_image"]["value"] == pytest.approx(joules * share / images)
    assert saved["context"]["device"] == "cpu" and saved["context"]["bench"]["apportioned"]
    assert [r["source"] for r in saved["energy"]["readings"]] == [
        "cpu package-0",
        "cpu package-0 dram",
        "gpu (NVML)",  # no CUDA GPU here: said, not silently left out
    ]
    assert saved["energy"]["readings"][2]["reason"] == "not measurable here (no CUDA GPU)"


def test_without_rapl_energy_is_not_measurable_here(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_module, "QUICK_CEILING_SECONDS", 0.05)
    monkeypatch.setattr(bench_module, "_device_spec", lambda name: None)  # a CPU not catalogued
    config = BenchRunConfig(digits(tmp_path), powercap_root=tmp_path / "absent", usd_per_hour=3.6)
    result = bench_run(config, progress=False)
    for quantity in (result.energy_joules, result.mean_watts, result.joules_per_image):
        assert quantity.value is None and quantity.missing.startswith("not measurable here (")
    (rapl,) = [r for r in result.energy.readings if r.kind == "rapl"]
    assert "absent does not exist" in rapl.reason
    assert any(line.startswith("cpu (RAPL): not measurable here (") for line in result.missing())
    assert result.eta.missing.startswith("not measurable here (")  # no energy, no datasheet TDP
    assert result.mu.missing == (
        f"no price: pass price_usd=USD ({result.device_name} is not in the catalogue)"
    )
    # The ceiling was measured now, with the run's dtype on the run's device.
    assert result.ceiling_flops_per_second.source.startswith("measured now: fp32 matmul")
    assert result.utilisation.value > 0
    assert result.cost_usd.value == pytest.approx(3.6 * result.metered_seconds / 3600)
    assert "BenchRunResult('lenet-like' on 'digits', cpu" in repr(result)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"price_usd": 0}, "price_usd: a price must be positive. Received: price_usd=0"),
        ({"price_usd": -5.0}, "a price must be positive"),
        ({"usd_per_hour": -1}, "usd_per_hour: a cost per hour must be >= 0"),
        ({"energy_interval_seconds": 0}, "energy_interval_seconds"),
        ({"ceilings": ""}, "ceilings must be a path"),
    ],
)
def test_bad_settings_are_named(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        BenchRunConfig(digits(tmp_path), **settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"steps": 0}, "steps must be a positive integer"), ({"epochs": 0}, "epochs must be")],
)
def test_steps_and_epochs_are_validated_by_the_train_config(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        digits(tmp_path, **overrides)


def test_cuda_without_cuda_is_a_clear_error_before_any_work(tmp_path, no_cuda):
    config = BenchRunConfig(digits(tmp_path, device="cuda"), measure_ceiling=False)
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available here"):
        bench_run(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_ceilings_file_of_another_device_is_refused(tmp_path):
    rate = MatmulRate(flops_per_second=1e12, size=512, seconds=0.001, repeats=3)
    other = Ceilings("cuda", "NVIDIA H100 80GB HBM3", {"fp32": rate}, copy=None)
    path = tmp_path / "ceilings-cuda.json"
    path.write_text(json.dumps(other.to_dict()))
    config = BenchRunConfig(digits(tmp_path), ceilings=path)
    with pytest.raises(ValueError, match=r"was measured on cuda \(NVIDIA H100 80GB HBM3\)"):
        bench_run(config, progress=False)
    with pytest.raises(FileNotFoundError, match="ceilings: no such file"):
        bench_run(BenchRunConfig(digits(tmp_path), ceilings=tmp_path / "nope.json"))


def cli_app():
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    bench = typer.Typer()
    bench.command("run")(bench_run_command)
    app.add_typer(bench, name="bench")
    return app


@pytest.fixture
def no_rapl(tmp_path, monkeypatch):
    """The CLI meters the real /sys/class/powercap; point it at an empty folder instead."""
    empty = tmp_path / "empty-powercap"
    empty.mkdir()

    def meter(device, **settings):
        return EnergyMeter(device, **{**settings, "powercap_root": empty})

    monkeypatch.setattr(bench_module, "EnergyMeter", meter)


QUICK = ["--data", "digits", "--epochs", "1", "--batch-size", "256", "--threads", "1"]


def invoke(*args):
    return CliRunner().invoke(cli_app(), ["bench", "run", *map(str, args)])


def test_cli_prints_every_figure_and_why_some_are_missing(tmp_path, ceilings_file, no_rapl):
    args = ["lenet-like", *QUICK, "--device", "cpu", "--out", tmp_path / "run"]
    result = invoke(*args, "--ceilings", ceilings_file, "--price-usd", 500, "--usd-per-hour", 1.2)
    assert result.exit_code == 0, result.output
    output = result.stdout
    assert "bench run: lenet-like on digits, 1 epoch, batch 256, fp32 on cpu" in output
    for label in ("throughput", "achieved", "utilisation", "energy per image", "mu", "eta"):
        assert label in output
    assert "images/s" in output and "GFLOP/s" in output
    assert f"from {ceilings_file}" in output
    assert "energy              not measurable here (" in output
    assert "has no intel-rapl:* zones" in output
    assert "given (--price-usd=500)" in output and "FLOP/s per USD" in output
    assert "cost of the run     $" in output
    assert f"bench.json: {tmp_path / 'run' / 'bench.json'}" in output


def test_cli_json_is_bench_json(tmp_path, ceilings_file, no_rapl):
    args = ["lenet-like", *QUICK, "--out", tmp_path / "run", "--ceilings", ceilings_file]
    result = invoke(*args, "--device", "cpu", "--json")  # the ceilings file is the CPU's
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads((tmp_path / "run" / "bench.json").read_text())
    assert data["format"] == "cnnlab-bench-run" and data["images_trained"] == 1280
    assert math.isclose(
        data["utilisation"]["value"],
        100 * data["achieved_flops_per_second"]["value"] / CEILING,
        rel_tol=1e-9,
    )
    assert "epoch 1/1" in result.stderr  # the progress lines stay off stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--price-usd", "0"], "a price must be positive"),
        (["--usd-per-hour", "-2"], "a cost per hour must be >= 0"),
        (["--steps", "0"], "steps must be a positive integer"),
        (["--epochs", "0"], "--epochs must be an integer from 1 to 1000000"),
        (["--data", "digits", "--ceilings", "/nonexistent/c.json"], "ceilings: no such file"),
    ],
)
def test_cli_bad_input_is_one_line_and_status_2(tmp_path, args, message):
    base = [] if "--data" in args else ["--data", "digits"]
    result = invoke("lenet-like", *base, *args, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_cli_cuda_without_cuda(tmp_path, no_cuda):
    result = invoke("lenet-like", "--data", "digits", "--device", "cuda", "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "device='cuda' but CUDA is not available here" in " ".join(result.stderr.split())
    assert not (tmp_path / "run").exists()


def test_cli_needs_data():
    result = invoke("lenet-like")
    assert result.exit_code == 2 and "needs --data NAME" in result.stderr
