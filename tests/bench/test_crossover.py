"""The crossover experiment on the CPU at toy sizes: rows, extrapolation, parameter and FLOP counts
by hand, the data fallback, crossover detection on made-up and reference timings, the plot and
the JSON, a zoo model's batch sweep, every bad input, and the CLI."""

import dataclasses
import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import cnnlab.bench.crossover as crossover_module
from cnnlab.bench.crossover import CrossoverConfig, run_crossover
from cnnlab.bench.crossover_plot import plot_crossover, write_crossover
from cnnlab.bench.crossover_result import (
    CrossoverPoint,
    CrossoverResult,
    crossover_notes,
    describe_crossover,
    find_crossover,
    find_crossovers,
)
from cnnlab.cli.bench import bench_app
from cnnlab.data import Dataset
from cnnlab.models import create_model

runner = CliRunner()
TOY = {"batch_sizes": (16, 64), "devices": ("cpu",), "samples": 512, "warmup_steps": 1}


def mlp_parameters(n: int) -> int:
    """784 -> n -> n -> 10, weights and biases."""
    return 784 * n + n + n * n + n + 10 * n + 10


def mlp_training_flops(n: int) -> int:
    """Per sample: forward 2*(784n + n^2 + 10n); backward the same for the weight gradients plus
    the input gradients of the second and third layers (the first needs none)."""
    forward = 2 * (784 * n + n * n + 10 * n)
    return forward + forward + 2 * (n * n + 10 * n)


@pytest.fixture(scope="module")
def capped():
    """Each point stops after its first timed step: every epoch is extrapolated."""
    config = CrossoverConfig(widths=(8, 32), data="synthetic", max_seconds=1e-9, **TOY)
    return run_crossover(config)


@pytest.fixture(scope="module")
def whole():
    return run_crossover(CrossoverConfig(widths=(8,), data="synthetic", **TOY))


def test_rows_parameters_and_flops_by_hand(capped):
    assert [(p.batch_size, p.width) for p in capped.points] == [
        (16, 8),
        (64, 8),
        (16, 32),
        (64, 32),
    ]
    for point in capped.points:
        assert point.device == "cpu" and point.x == point.width
        assert point.parameters == mlp_parameters(point.width)
        assert point.parameters == sum(
            p.numel() for p in create_model("mlp", width=point.width).parameters()
        )
        assert point.flops_per_sample == mlp_training_flops(point.width)
        assert point.achieved_flops_per_second == pytest.approx(
            point.flops_per_sample * 512 / point.seconds, rel=1e-12
        )
    assert mlp_parameters(4096) == 20_037_642  # the slide's i = 12


def test_a_capped_point_is_extrapolated_and_says_so(capped):
    for point in capped.points:
        assert point.extrapolated and point.measured_steps == 1
        assert point.measured_samples == point.batch_size
        assert point.seconds == pytest.approx(point.measured_seconds * 512 / point.batch_size)
        assert point.describe_seconds().endswith("s (extrapolated from 1 step)")


def test_an_uncapped_point_times_the_whole_epoch(whole):
    point = whole.point("cpu", 64, 8)
    assert not point.extrapolated
    assert (point.steps, point.measured_steps, point.measured_samples) == (8, 8, 512)
    assert point.seconds == point.measured_seconds
    assert "extrapolated" not in point.describe_seconds()


def gpu_notes(notes):
    """The notes that explain why no GPU was timed."""
    return [note for note in notes if note.startswith(("no GPU", "only the CPU"))]


def test_without_a_gpu_the_default_devices_are_the_cpu_and_a_note_says_so(no_cuda):
    toy = {key: value for key, value in TOY.items() if key != "devices"}  # the default: None
    result = run_crossover(CrossoverConfig(widths=(8,), data="synthetic", max_seconds=1e-9, **toy))
    assert result.devices == ("cpu",) and result.crossovers == ()
    assert {point.device for point in result.points} == {"cpu"}
    (note,) = gpu_notes(result.notes)
    assert note.startswith("no GPU: CUDA is not available on this machine (torch ")
    assert note.endswith("so only the CPU side was measured")


@pytest.mark.parametrize(
    ("cuda", "by_default", "expected"),
    [
        (False, True, "no GPU: CUDA is not available on this machine"),
        (False, False, "no GPU: CUDA is not available on this machine"),
        (True, False, "only the CPU was measured (devices=cpu); add cuda to compare"),
        (True, True, None),  # cannot happen: by default a CUDA machine times cuda too
    ],
)
def test_a_cpu_only_result_explains_the_missing_gpu(
    capped, monkeypatch, cuda, by_default, expected
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    notes = gpu_notes(crossover_notes(capped, devices_by_default=by_default))
    if expected is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith(expected)


def fake_dataset(name: str) -> Dataset:
    images = torch.randint(0, 256, (100, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(100) % 10
    classes = tuple(str(i) for i in range(10))
    return Dataset(name, classes, images, labels, images[:10], labels[:10], "fake", False)


def test_auto_data_takes_mnist_then_fashion_mnist_then_synthetic(monkeypatch):
    found = {"fashion-mnist"}

    def load(name, download):
        assert download is False  # auto never tries the network
        if name not in found:
            raise FileNotFoundError(f"dataset {name!r} is not available. Three ways to get it")
        return fake_dataset(name)

    monkeypatch.setattr(crossover_module, "load_dataset", load)
    config = CrossoverConfig(widths=(4,), max_seconds=1e-9, **{**TOY, "batch_sizes": (16,)})
    result = run_crossover(config)
    assert result.data["name"] == "fashion-mnist"
    assert "100 distinct" in result.data["note"]  # fewer images than samples: the epoch cycles
    found.clear()
    result = run_crossover(config)
    assert result.data["name"] == "synthetic"
    assert "no MNIST or Fashion-MNIST found" in result.data["note"]
    assert any(note.startswith("data: synthetic: random uint8 images") for note in result.notes)


# The reference measurement on an H200 against its 16-core Xeon host (seconds per epoch).
REFERENCE_WIDTHS = [16, 64, 128, 512, 1024, 4096, 8192]
REFERENCE = {
    32: ([1.96, 2.03, 2.92, 5.82, 10.5, 72.5, 300], [2.96, 2.45, 2.47, 2.30, 2.36, 2.44, 4.64]),
    256: ([0.29, 0.41, 0.62, 1.51, 3.12, 20.5, 64.6], [0.40, 0.32, 0.32, 0.36, 0.32, 0.34, 0.94]),
}


@pytest.mark.parametrize(
    ("cpu", "gpu", "expected", "kind"),
    [
        (*REFERENCE[32], 128, "crossover"),
        (*REFERENCE[256], 64, "crossover"),
        ([1, 2, 3, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7, 8], None, "none"),  # the CPU always wins
        ([1, 2, 3, 4, 5, 6, 7], [2, 1, 1, 1, 1, 1, 9], None, "none"),  # lost again at the end
        ([9, 9, 9, 9, 9, 9, 9], [1, 1, 1, 1, 1, 1, 1], 16, "always-faster"),
        ([3, 3, 3, 3, 3, 3, 3], [4, 2, 4, 2, 2, 2, 2], 512, "crossover"),  # stays faster from 512
        ([3, 3, 3, 3, 3, 3, 3], [4, 4, 4, 4, 4, 4, 3], None, "none"),  # a tie is not faster
    ],
)
def test_find_crossover_on_made_up_timings(cpu, gpu, expected, kind):
    at = find_crossover(REFERENCE_WIDTHS, cpu, gpu)
    assert at == expected
    found, message = describe_crossover(
        REFERENCE_WIDTHS, at, accelerator="cuda", label="batch 32", unit="n"
    )
    assert found == kind
    assert message.startswith("batch 32: ")
    if kind == "none":
        assert "no crossover in range" in message and "n=8192" in message


def reference_result() -> CrossoverResult:
    """The H200 reference as a CrossoverResult, every point measured over 1,875 or 235 steps."""
    config = CrossoverConfig(widths=tuple(REFERENCE_WIDTHS), batch_sizes=(32, 256))
    points = []
    for batch_size, timings in REFERENCE.items():
        steps = -(-60_000 // batch_size)
        for device, seconds in zip(("cpu", "cuda"), timings, strict=True):
            for width, value in zip(REFERENCE_WIDTHS, seconds, strict=True):
                points.append(
                    CrossoverPoint(
                        device, batch_size, width, mlp_parameters(width), 60_000, steps, steps,
                        60_000, value, value, mlp_training_flops(width), 3,
                    )
                )  # fmt: skip
    data = {"name": "mnist", "source": "reference", "note": "mnist (reference)"}
    context = {"devices": {"cpu": "Intel Xeon (16 cores)", "cuda": "NVIDIA H200"}}
    result = CrossoverResult(config, "mlp", ("cpu", "cuda"), data, tuple(points), (), (), context)
    return dataclasses.replace(result, crossovers=find_crossovers(result))


def test_crossovers_and_the_launch_overhead_note_on_the_reference():
    result = reference_result()
    assert [(c.batch_size, c.accelerator, c.at) for c in result.crossovers] == [
        (32, "cuda", 128),
        (256, "cuda", 64),
    ]
    notes = crossover_notes(result)
    flat = [note for note in notes if note.startswith("cuda, batch 32:")]
    # 2.96 s / 1875 steps = 1.6 ms per step, flat (within 1.5x) from n=16 to n=4096
    assert flat and "about 1.6 ms from n=16 to n=4096" in flat[0]
    assert "When is the GPU faster than the CPU?" in flat[0]


def test_the_plot_marks_the_crossover(tmp_path):
    path = plot_crossover(reference_result(), tmp_path / "reference.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 600


def test_png_and_json_are_written(capped, tmp_path):
    files = write_crossover(capped, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "crossover.json",
        "crossover.png",
    ]
    with Image.open(files["png"]) as image:
        assert image.format == "PNG"
    data = json.loads(files["json"].read_text())
    assert data["format"] == "cnnlab-crossover" and data["swept"] == "width"
    assert len(data["points"]) == 4 and data["points"][0]["extrapolated"] is True
    assert data["config"]["widths"] == [8, 32]
    for key in ("cnnlab_version", "torch_version", "devices", "threads", "excluded"):
        assert key in data["context"]


def test_a_zoo_model_sweeps_the_batch_size(tmp_path):
    config = CrossoverConfig(
        model="lenet-like",
        batch_sizes=(4, 16),
        devices=("cpu",),
        samples=64,
        max_seconds=1e-9,
        warmup_steps=1,
    )
    result = run_crossover(config)
    assert [(p.batch_size, p.width, p.x) for p in result.points] == [(4, None, 4), (16, None, 16)]
    parameters = sum(p.numel() for p in create_model("lenet-like").parameters())
    assert all(p.parameters == parameters for p in result.points)
    assert result.data["name"] == "synthetic" and "1x32x32" in result.data["note"]
    assert "the input shape of lenet-like" in result.data["note"]
    files = write_crossover(result, tmp_path)
    assert json.loads(files["json"].read_text())["swept"] == "batch_size"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"widths": (16, 0)}, r"widths must be positive integers .*Received: widths=\(16, 0\)"),
        ({"widths": ()}, r"widths must be positive integers \(at least one\)"),
        ({"batch_sizes": (32, -1)}, r"batch_sizes must be positive integers .*batch_sizes="),
        ({"min_exp": 8, "max_exp": 4}, r"empty range.*Received: min_exp=8, max_exp=4"),
        ({"max_exp": 30}, r"max_exp must be an integer from 0 to 16. Received: max_exp=30"),
        ({"warmup_steps": -1}, r"warmup_steps must be an integer >= 0. Received: warmup_steps=-1"),
        ({"devices": ("tpu",)}, r"devices must be cpu, cuda, cuda:N or mps. .*\['tpu'\]"),
        ({"devices": ("cpu", "cpu")}, r"devices must name each device once"),
        ({"data": "imagenet"}, r"data must be one of auto, mnist, .*Received: data='imagenet'"),
        ({"max_seconds": 0}, r"max_seconds must be > 0 .*Received: max_seconds=0"),
        ({"samples": 0}, r"samples must be an integer from 1 to 100000000. Received: samples=0"),
        ({"model": "lenet6"}, r"Unknown model: name='lenet6'"),
        ({"model": "lenet5", "widths": (16,)}, r"widths applies to the MLP sweep only"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CrossoverConfig(**kwargs)


def test_cuda_without_cuda_is_refused_before_any_work(no_cuda, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("data was loaded before the devices were checked")

    monkeypatch.setattr(crossover_module, "load_dataset", no_work)
    with pytest.raises(ValueError, match=r"CUDA is not available: devices=\['cpu', 'cuda'\]"):
        run_crossover(CrossoverConfig(devices=("cpu", "cuda")))


def test_cli_prints_the_table_and_writes_the_files(tmp_path):
    args = ["crossover", "--widths", "8,32", "--batch-sizes", "16", "--devices", "cpu"]
    args += ["--samples", "256", "--max-seconds", "0.000001", "--data", "synthetic"]
    result = runner.invoke(bench_app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "784-n-n-10 MLP" in result.output
    assert f"{mlp_parameters(32):,}" in result.output
    assert "(extrapolated from 1 step)" in result.output
    assert (tmp_path / "a" / "crossover.png").is_file()
    result = runner.invoke(bench_app, [*args, "--out", str(tmp_path / "b"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["width"] for p in data["points"]] == [8, 32]
    assert data["files"]["png"].endswith("crossover.png")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--widths", "16,x"], "--widths expects integers separated by commas"),
        (["--widths", "16,0"], "widths must be positive integers"),
        (["--batch-sizes", "0"], "batch_sizes must be positive integers"),
        (["--min-exp", "8", "--max-exp", "4"], "empty range"),
        (["--widths", "16", "--min-exp", "4"], "--widths replaces --min-exp/--max-exp"),
        (["--devices", "gpu"], "devices must be cpu, cuda, cuda:N or mps"),
        (["--max-seconds", "-1"], "max_seconds must be > 0"),
    ],
)
def test_cli_bad_input_is_one_line_and_status_2(tmp_path, args, message):
    result = runner.invoke(bench_app, ["crossover", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_device_cuda_without_cuda(no_cuda, tmp_path):
    result = runner.invoke(bench_app, ["crossover", "--device", "cuda", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "CUDA is not available: devices=['cuda'] asks for 'cuda'" in output
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_against_cuda_finds_one_verdict_per_batch_size():
    config = CrossoverConfig(
        widths=(16, 1024),
        batch_sizes=(32, 256),
        devices=("cpu", "cuda"),
        data="synthetic",
        samples=4096,
        max_seconds=0.2,
    )
    result = run_crossover(config)
    assert result.devices == ("cpu", "cuda")
    assert sorted((p.device != "cpu", p.batch_size, p.width) for p in result.points) == [
        (gpu, batch, width) for gpu in (False, True) for batch in (32, 256) for width in (16, 1024)
    ]
    assert not gpu_notes(result.notes)  # a GPU was timed: no "no GPU" note
    assert [c.batch_size for c in result.crossovers] == [32, 256]
    for verdict in result.crossovers:
        # Two widths: the GPU stays faster from 16 if it wins at both, from 1024 if only there.
        faster = [
            result.point("cuda", verdict.batch_size, width).seconds
            < result.point("cpu", verdict.batch_size, width).seconds
            for width in (16, 1024)
        ]
        expected = {(True, True): 16, (False, True): 1024}.get(tuple(faster))
        assert (verdict.accelerator, verdict.at) == ("cuda", expected), verdict.message
        assert verdict.kind == {None: "none", 16: "always-faster", 1024: "crossover"}[expected]


def test_a_busy_machine_is_reported():
    result = reference_result()
    assert not any("CPUs were shared" in note for note in crossover_notes(result))
    busy = dataclasses.replace(result, context={**result.context, "others_cpu_share": 0.4})
    notes = [note for note in crossover_notes(busy) if "CPUs were shared" in note]
    assert notes and "other processes used 40% of their time" in notes[0]
