"""bench infer and benchmarks/infer_cpu.py: what is measured, never how fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime  # noqa: F401  (the dev extra; cnnlab imports it inside functions)
import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.deploy.infer import InferBenchConfig, bench_infer

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
FAST = {"budget_seconds": 0.01, "min_repeats": 2, "warmup": 1, "eval_images": 64}


@pytest.fixture(scope="module")
def measured(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("infer")
    config = InferBenchConfig(
        str(digits_run), int8=True, batches=(1, 3), calibration=32, out=str(out), **FAST
    )
    return bench_infer(config)


def test_every_backend_precision_and_batch_is_a_row(measured):
    keys = [(r.backend, r.precision, r.batch) for r in measured.rows]
    assert keys == [
        ("torch", "fp32", 1),
        ("torch", "fp32", 3),
        ("onnxruntime", "fp32", 1),
        ("onnxruntime", "fp32", 3),
        ("onnxruntime", "int8", 1),
        ("onnxruntime", "int8", 3),
    ]
    for row in measured.rows:
        assert row.repeats >= 2
        assert 0 < row.p50_ms <= row.p99_ms
        assert row.images_per_second == pytest.approx(row.batch / (row.p50_ms / 1000))
        assert 0.0 <= row.accuracy <= 1.0
        assert row.meets_deadline == (row.p99_ms <= measured.config.deadline_ms)
    torch_rows = [r for r in measured.rows if r.backend == "torch"]
    assert all(r.speedup == 1.0 and r.accuracy_change == 0.0 for r in torch_rows)
    assert all(r.file_bytes is None for r in torch_rows)
    sizes = {r.precision: r.file_bytes for r in measured.rows if r.backend == "onnxruntime"}
    assert sizes["int8"] < sizes["fp32"]


def test_json_and_png_are_written(measured):
    data = json.loads((measured.folder / "infer.json").read_text())
    assert data["format"] == "cnnlab-bench-infer"
    assert len(data["rows"]) == 6
    assert data["context"]["threads"] >= 1 and "torch_version" in data["context"]
    assert set(data["speedups"]) == {
        "best_fp32_speedup_batch1",
        "best_int8_speedup_batch1",
        "best_fp32_speedup_batch3",
        "best_int8_speedup_batch3",
    }
    assert (measured.folder / "infer.png").read_bytes().startswith(b"\x89PNG")
    manifests = sorted(p.parent.name for p in measured.folder.glob("exports/*/model.json"))
    assert manifests == ["onnx"]


def test_energy_is_measured_or_says_why(measured):
    for row in measured.rows:
        assert (row.joules_per_image is None) != (row.energy_note is None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backends": ("onnx",)}, r"backends.*Received: backends='onnx'"),
        ({"batches": (0,)}, r"batches"),
        ({"deadline_ms": 0}, r"deadline_ms must be a positive number. Received: deadline_ms=0"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        InferBenchConfig("mlp", **overrides)


def test_cli_prints_the_table(digits_run, tmp_path):
    args = ["bench", "infer", str(digits_run), "--batch", "2", "--budget", "0.01"]
    result = CliRunner().invoke(app, [*args, "--eval-images", "32", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for text in ("backend", "onnxruntime", "torch", "speed-up", "json:"):
        assert text in result.stdout


def test_cli_names_the_flag_of_a_bad_backend():
    result = CliRunner().invoke(app, ["bench", "infer", "mlp", "--backends", "tensorrt"])
    assert result.exit_code == 2
    assert "tensorrt" in result.stderr


@pytest.mark.slow
def test_benchmark_dry_run(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "infer_cpu.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    path = out / "infer_cpu.json"
    assert f"wrote {path}" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["infer_cpu.json"]
    data = json.loads(path.read_text())
    assert data["context"]["dry_run"] is True
    (case,) = data["results"]
    assert case["model"] == "lenet-like"
    backends = {row["backend"] for row in case["rows"]}
    assert backends == set(data["context"]["backends"])
    assert {row["batch"] for row in case["rows"]} == {1, 4}


def test_benchmark_dry_run_refuses_the_recorded_results():
    out = BENCHMARKS / "results" / "dry-run"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "infer_cpu.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "--dry-run never writes into the recorded results" in done.stderr
    assert not out.exists()
