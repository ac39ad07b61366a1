"""The `cnnlab` command as a user types it: slide numbers in the output, clear errors, JSON."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app

GOLDEN = Path(__file__).parent.parent / "golden"
runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def grid(text: str, rows: list[list[float]]) -> bool:
    """Whether every row of ``rows`` appears, as whitespace-separated numbers, in ``text``."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return all(any(" ".join(map(str, row)) in line for line in lines) for row in rows)


SLIDE_MAP = [
    [114, 328, -26, 470, 158],
    [53, 266, -61, -30, 344],
    [403, 116, -47, 295, 244],
    [108, -135, 256, -128, 344],
    [314, 346, 279, 153, 421],
]


def test_explain_conv_reproduces_the_slide():
    text = run("explain", "conv")
    assert "  5*60 + (-1)*113 + (-1)*73 = 114" in text
    assert grid(text, SLIDE_MAP)


def test_explain_conv_all_terms_shows_nine():
    text = run("explain", "conv", "--all-terms")
    line = next(line for line in text.splitlines() if line.strip().endswith("= 114"))
    assert line.count("*") == 9


def test_explain_conv_stride_2():
    text = run("explain", "conv", "--stride", "2")
    assert grid(text, [[114, -26, 158], [403, -47, 244], [314, 279, 421]])
    assert "output map 3x3" in text


def test_explain_conv_at_any_cell():
    text = run("explain", "conv", "--at", "2,3")
    assert "(-1)*129 + 5*69 + (-1)*134 + (-1)*95 = -128" not in text  # that is cell (3, 3)
    assert text.splitlines()[text.splitlines().index("output cell (2, 3)") + 1].endswith("= 295")


def test_explain_conv_rgb():
    text = run("explain", "conv", "--example", "rgb")
    for total in ("= 308", "= -498", "= 164"):
        assert any(line.rstrip().endswith(total) for line in text.splitlines())
    assert "  308 - 498 + 164 + 1 = -25" in text


@pytest.mark.parametrize(
    ("mode", "output", "equation"),
    [
        ("max", [[100, 184], [12, 45]], "max(29, 15, 0, 100) = 100"),
        ("avg", [[36.5, 80], [12, 15]], "(31 + 15 + 0 + 100) / 4 = 36.5"),
    ],
)
def test_explain_pool(mode, output, equation):
    text = run("explain", "pool", "--mode", mode)
    assert equation in text
    assert grid(text, output)
    assert ("truncates" in text) == (mode == "avg")


def test_explain_pool_json():
    data = json.loads(run("explain", "pool", "--mode", "avg", "--json"))
    assert data["output"] == [[36.5, 80.0], [12.0, 15.0]]
    assert "36" in data["note"]


def test_explain_conv_json_has_the_trace():
    data = json.loads(run("explain", "conv", "--example", "rgb", "--json"))
    trace = data["traces"][0]
    assert [c["sum"] for c in trace["channels"]] == [308, -498, 164]
    assert (trace["bias"], trace["result"]) == (1, -25)


def test_user_input_and_kernels(tmp_path):
    x = np.arange(16, dtype=float).reshape(4, 4)
    np.save(tmp_path / "x.npy", x)
    text = run(
        "explain", "conv", "--input", str(tmp_path / "x.npy"), "--kernel", "1,0;0,-1",
        "--padding", "0",
    )  # fmt: skip
    # Every 2x2 window of an arange grid: x[i, j] - x[i+1, j+1] = -5.
    assert grid(text, [[-5, -5, -5]] * 3)
    assert "  (-1)*5 = -5" in text  # the zero product 1*0 is left out, as on the slide


def test_feature_map_png(tmp_path):
    image = np.zeros((40, 60), dtype=np.uint8)
    image[10:30, 20:40] = 200
    Image.fromarray(image).save(tmp_path / "photo.png")
    out = tmp_path / "maps.png"
    text = run(
        "explain", "conv", "--input", str(tmp_path / "photo.png"), "--kernel", "sobel-x",
        "--kernel", "sobel-y", "--out", str(out),
    )  # fmt: skip
    assert f"Wrote {out}" in text
    assert "output map 40x60" in text
    with Image.open(out) as png:
        width, height = png.size
    assert width > 2.5 * height  # three panels side by side


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "conv", "--at", "9,9"], "at must be a (row, col) pair inside the 5x5 output"),
        (["explain", "conv", "--at", "x"], "--at expects ROW,COL"),
        (["explain", "conv", "--stride", "0"], "Received: --stride=0"),
        (["explain", "conv", "--padding", "-1"], "Received: --padding=-1"),
        (["explain", "conv", "--dilation", "0"], "Received: dilation=0"),
        (["explain", "conv", "--kernel", "1,2;3"], "Received: kernel='1,2;3'"),
        (["explain", "conv", "--kernel", "sobelx"], "did you mean 'sobel-x'?"),
        (["explain", "conv", "--input", "/no/such.png"], "Received: --input='/no/such.png'"),
        (["explain", "conv", "--example", "rgb", "--kernel", "edge"], "--example rgb uses"),
        (["explain", "pool", "--size", "0"], "Received: --size=0"),
        (["explain", "pool", "--at", "2,0"], "Received: --at=(2, 0)"),
        (["summary", "lenet"], "Did you mean: lenet-like, lenet5, lenet5-1998?"),
        (["summary", "darknet19", "--input", "3,16,16"], "layer 'max17' (MaxPool2d 2x2/2)"),
        (["summary", "lenet-like", "--input", "3,a"], "--input expects positive integers"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unreadable_input_file(tmp_path):
    garbage = tmp_path / "photo.png"
    garbage.write_text("not an image")
    result = runner.invoke(app, ["explain", "conv", "--input", str(garbage)])
    assert result.exit_code == 2
    assert "input could not be read" in result.output
    assert ".npy" in result.output


def test_summary_lenet_like_golden():
    text = run("summary", "lenet-like")
    assert text == (GOLDEN / "lenet-like.keras.txt").read_text()


def test_summary_mlp():
    text = run("summary", "mlp")
    for params in ("3215360", "16781312", "40970"):
        assert any(line.rstrip().endswith(f" {params}") for line in text.splitlines())
    assert "Total params: 20,037,642" in text


def test_summary_darknet19_darknet_style():
    text = run("summary", "darknet19", "--style", "darknet")
    golden = (GOLDEN / "darknet19.darknet.txt").read_text().splitlines()
    assert text.splitlines()[1:] == golden


def test_summary_overrides():
    data = json.loads(
        run("summary", "resnet18", "--num-classes", "10", "--in-channels", "1", "--json")
    )
    assert data["input_shape"] == [1, 224, 224]
    assert data["layers"][-1]["output_shape"] == [10]


def test_models_lists_the_zoo():
    rows = json.loads(run("models", "--json"))
    by_name = {row["name"]: row for row in rows}
    assert by_name["lenet-like"]["params"] == 81_194
    assert by_name["darknet19"]["trainable_params"] == 20_842_376
    assert round(by_name["darknet19"]["forward_gflops"], 2) == 7.29
    text = run("models", "vgg*")
    assert "138,357,544" in text
    assert "lenet" not in text


def test_tour_walks_the_lecture():
    text = run("tour", "--no-train", "--no-hardware")
    for needle in (
        "5*60 + (-1)*113 + (-1)*73 = 114",
        "308 - 498 + 164 + 1 = -25",
        "(31 + 15 + 0 + 100) / 4 = 36.5",
        "Total params: 81,194",
        "total 7.29 BFLOPs",
        "60,192,808",
    ):
        assert needle in text


def test_tour_trains_and_falls_back_to_digits(monkeypatch, tmp_path):
    from cnnlab.cli import tour

    def unreachable(name, **kwargs):
        raise FileNotFoundError(f"dataset {name!r} is not available: three ways to get it ...")

    monkeypatch.setattr(tour, "resolve_dataset", unreachable)
    monkeypatch.chdir(tmp_path)  # the run folder goes to ./runs
    args = ["tour", "--epochs", "1", "--no-hardware", "--json"]  # no --data: Fashion-MNIST
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trains on scikit-learn's bundled digits instead" in result.stderr
    data = json.loads(result.stdout)
    training = data["training"]
    assert training["data"] == "digits"
    assert training["epochs_run"] == 1
    assert training["test_accuracy"] > 0.2  # one epoch of 1,437 digits; chance is 0.1
    assert Path(training["run_dir"]).parent == tmp_path / "runs"


def test_tour_ends_with_the_hardware_and_says_when_there_is_no_gpu(monkeypatch):
    from cnnlab.bench.crossover import CrossoverConfig
    from cnnlab.cli import tour

    # A machine without a GPU, on every machine: torch answers as it does without CUDA or MPS.
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    monkeypatch.setattr("torch.backends.mps.is_available", lambda: False)
    tiny = CrossoverConfig(widths=(16, 64), batch_sizes=(256,), samples=2048, data="synthetic")
    monkeypatch.setattr(tour, "TOUR_CROSSOVER", tiny)
    text = run("tour", "--no-train")
    hardware = " ".join(text[text.index("9. The hardware") :].split())
    assert "SIMD features" in hardware
    assert "784-n-n-10 MLP" in hardware
    assert "13,002" in hardware  # n=16: 784*16 + 16 + 16*16 + 16 + 16*10 + 10 parameters
    assert "GPU no CUDA GPU visible to PyTorch: " in hardware  # the machine table
    assert "no GPU: CUDA is not available on this machine" in hardware  # the crossover's note
    assert "faster from n=" not in hardware and "faster throughout" not in hardware


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().startswith("cnnlab 0.")
