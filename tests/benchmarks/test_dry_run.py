"""Every script in benchmarks/ runs its ``--dry-run`` (seconds, tiny sizes, the same code path as
a real run), prints its table and writes its JSON with the context, so that none can rot.

Each script runs as users run it: a subprocess, with ``--out`` under ``tmp_path`` (a dry run
never writes into benchmarks/results). No test looks at a time; only at what was measured.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RESULTS = BENCHMARKS / "results"
TIMEOUT = 600  # seconds; a hang fails the test instead of stalling CI


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def check_train_cpu(result: dict, stdout: str) -> None:
    context = result["context"]
    for key in ("cnnlab_version", "git_commit", "torch_version", "python_version", "platform"):
        assert key in context, key
    assert isinstance(context["torch_version"], str) and context["torch_version"]
    assert context["device"].startswith("cpu: ")
    assert context["batch_sizes"] == [32]
    assert context["seed"] == 0
    assert context["epochs"] == 1 and context["repeats"] == 1
    assert context["dry_run"] is True
    assert context["steps_per_run"] > 0
    assert context["data"].startswith(("fashion-mnist", "digits"))

    rows = {row["competitor"]: row for row in result["results"]}
    assert set(rows) == {"cnnlab", "keras", "torch-dataloader"}
    keras_installed = importlib.util.find_spec("keras") is not None
    for name, row in rows.items():
        assert row["batch_size"] == 32
        assert "failed" not in row, row
        if name == "keras" and not keras_installed:
            assert "keras is not installed" in row["skipped"]
            assert "keras is not installed" in stdout  # the table says it was skipped
            continue
        assert row["seconds_per_epoch"] > 0
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert len(row["runs"]) == 1
    assert context["keras_version"] is None or keras_installed

    recipe = result["recipe"]
    assert recipe["competitor"] == "cnnlab-recipe"
    assert recipe["recipe_epochs"] == 1  # the step cap ends the recipe in its first epoch
    assert 0.0 <= recipe["test_accuracy"] <= 1.0

    for name in ("competitor", "cnnlab", "torch-dataloader", "keras", "default recipe"):
        assert name in stdout


def check_quest_load(result: dict, stdout: str) -> None:
    context = result["context"]
    assert context["benchmark"] == "quest_load"
    assert context["dry_run"] is True
    for name in ("cnnlab", "fastapi", "uvicorn", "sqlalchemy", "httpx", "numpy", "python"):
        assert context["versions"][name] != "absent", name
    assert set(context["git"]) == {"commit", "dirty"}
    assert context["cpu"] and context["cpu_count"] >= 1
    assert context["db"].startswith("sqlite:///")
    assert context["concurrency"] == {
        "readers": 3,
        "submitters": 2,
        "page_readers": 1,
        "think_seconds": 0.0,
    }
    assert context["teams"] == 4 and context["labels"] == 1_000

    routes = result["routes"]
    assert set(routes) == {"GET /", "GET /api/leaderboard", "POST /api/submissions"}
    for route, row in routes.items():
        assert row["requests"] > 0, route
        assert row["errors"] == {}, route
        assert row["limit_refusals_429"] == 0, route
        assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], route
    assert result["requests_answered_including_warmup"] >= sum(
        row["requests"] for row in routes.values()
    )
    assert context["workers"] == 1
    assert len(result["load_average_before_after"]) == 2

    open_loop = result["open_loop"]  # fixed rates: every due request was sent and answered
    assert open_loop["rates_per_s"] == {"GET /api/leaderboard": 20.0, "POST /api/submissions": 4.0}
    assert {route: row["requests"] for route, row in open_loop["routes"].items()} == {
        "GET /api/leaderboard": 30,
        "POST /api/submissions": 6,
    }
    saturation = result["saturation"]
    assert set(saturation) == {"GET /api/leaderboard", "POST /api/submissions"}
    for phase in (open_loop["routes"], saturation):
        for route, row in phase.items():
            assert row["errors"] == {} and row["requests"] > 0, route
            assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], route
    assert [saturation[route]["clients"] for route in sorted(saturation)] == [3, 2]

    for route in routes:
        assert route in stdout
    assert "p99 ms" in stdout
    assert "open loop" in stdout and "saturation" in stdout


def check_infer_cpu(result: dict, stdout: str) -> None:
    context = result["context"]
    assert context["benchmark"] == "infer_cpu"
    assert context["dry_run"] is True
    assert context["backends"][0] == "torch"  # the baseline every speed-up is measured against
    assert context["omp_wait_policy"] == "PASSIVE"
    (case,) = result["results"]
    assert case["model"] == "lenet-like"
    assert case["batches"] == [1, 4]
    rows = case["rows"]
    assert {row["backend"] for row in rows} == set(context["backends"])
    assert {row["batch"] for row in rows} == {1, 4}
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p99_ms"], row
        assert row["images_per_second"] > 0
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["accuracy_change"] == pytest.approx(row["accuracy"] - rows[0]["accuracy"])
        if row["backend"] == "torch":
            assert row["speedup"] == 1.0 and row["file_bytes"] is None
        else:
            assert row["file_bytes"] > 0  # an exported file was really written and timed
    for backend in context["backends"]:
        assert backend in stdout
    assert "p50 ms" in stdout and "speed-up" in stdout


def check_darknet_cpu(result: dict, stdout: str) -> None:
    context = result["context"]
    for key in ("cnnlab_version", "git_commit", "torch_version", "python_version", "cpu"):
        assert key in context, key
    assert result["dry_run"] is True
    assert result["batch"] == 1 and result["repeats"] == 2
    assert result["input"] == [3, 32, 32]
    assert result["omp_wait_policy"] == "PASSIVE"
    assert set(result["load"]) >= {"loadavg_before", "loadavg_after"}
    assert [int(n) for n in result["by_threads"]] == result["threads"]
    for threads, rows in result["by_threads"].items():
        for name in ("cnnlab", "pytorch eager"):
            assert rows[name]["wall_ms"] > 0 and rows[name]["runs"] == 2, (threads, name)
    darknet = result["results"].get("darknet (Debian)", {})
    if shutil.which("darknet") is None:
        assert "not installed" in darknet.get("skipped", "not installed")
    else:
        assert darknet["wall_ms"] > 0, darknet  # the real binary ran the same cfg
    assert result["cnnlab_speedup"]["cnnlab"] == 1.0
    for name, row in result["best"].items():
        assert row["threads"] in result["threads"], name
    assert "each at its best thread count" in stdout


def check_ddp_cpu(result: dict, stdout: str) -> None:
    context = result["context"]
    assert context["benchmark"] == "ddp_cpu" and context["dry_run"] is True
    assert context["data"] == "digits" and context["batch_sizes"] == [64]
    assert context["torch_version"] and context["cpu_count"] >= 1
    rows = result["results"]
    assert [(row["processes"], row["threads_per_process"]) for row in rows] == [(1, 2), (2, 1)]
    for row in rows:
        assert row["batch_size"] == 64
        assert row["batch_per_process"] == 64 // row["processes"]  # the global batch, split
        (run,) = row["runs"]
        assert run["steps"] == context["steps_per_run"] == 3
        assert row["images_per_second"] == run["images_per_second"] > 0
        assert 0.0 <= run["test_accuracy"] <= 1.0
    for name in ("1 process x 2 threads", "2 processes x 1 thread", "images/s"):
        assert name in stdout


def check_quest_secret(result: dict, stdout: str) -> None:
    context = result["context"]
    assert context["benchmark"] == "quest_secret" and context["dry_run"] is True
    assert context["data"] == "digits" and context["test_images"] == 360
    assert context["queries"] == 50 and context["cnn_epochs"] == 1
    assert context["perturbation"]["max_rotation"] > 0 and context["git_commit"]
    values = {(row["attack"], row["measure"]): row["value"] for row in result["results"]}
    assert len(values) == 10
    assert values[("exact lookup", "secret images found bit for bit")] == 0.0
    assert values[("public labels", "accuracy on the secret set")] < 0.3  # chance is 0.1
    assert all(0.0 <= value <= 1.0 for value in values.values())
    for name in ("public labels", "1-NN over the public test images", "shift search", "CNN"):
        assert name in stdout


def check_detect_fps(result: dict, stdout: str) -> None:
    context = result["context"]
    for key in ("cnnlab_version", "git_commit", "torch_version", "python_version", "cpu"):
        assert key in context, key
    assert result["dry_run"] is True and result["batch"] == 1 and result["repeats"] == 1
    assert set(result["load"]) >= {"loadavg_before", "loadavg_after", "others_cpu_share"}
    rows = {row["model"]: row for row in result["results"]}
    assert set(rows) == {"yolo-scenes", "yolov3-tiny"}
    for name, row in rows.items():
        assert row["input"] == [3, 64, 64], name
        assert row["images"] == 3 and len(row["fps_runs"]) == 1
        assert row["fps"] == row["fps_runs"][0] > 0
        assert 0 < row["forward_ms_per_image"] < row["ms_per_image"]
        assert 0 < row["boxes_per_image"] < 50  # the quietened random heads: a few boxes each
    assert "read, letterbox, forward, decode, NMS, draw" in stdout


CHECKS: dict[str, tuple[str, Callable[[dict, str], None]]] = {
    "ddp_cpu.py": ("ddp_cpu.json", check_ddp_cpu),
    "train_cpu.py": ("train_cpu.json", check_train_cpu),
    "infer_cpu.py": ("infer_cpu.json", check_infer_cpu),
    "darknet_cpu.py": ("darknet_cpu.json", check_darknet_cpu),
    "detect_fps.py": ("detect_fps.json", check_detect_fps),
    "quest_load.py": ("quest_load.json", check_quest_load),
    "quest_secret.py": ("quest_secret.json", check_quest_secret),
}


def test_every_benchmark_script_has_a_dry_run_check():
    assert sorted(
        path.name for path in BENCHMARKS.glob("[!_]*.py")
    )  # _*.py: shared helpers == sorted(CHECKS)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CHECKS))
def test_dry_run_prints_the_table_and_writes_json_with_context(script, tmp_path):
    recorded = {path: path.stat().st_mtime_ns for path in RESULTS.rglob("*") if path.is_file()}
    out = tmp_path / "out"
    done = run_script(script, "--dry-run", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr

    name, check = CHECKS[script]
    path = out / name
    assert f"wrote {path}" in done.stdout
    check(json.loads(path.read_text()), done.stdout)
    assert sorted(p.name for p in out.iterdir()) == [name]  # no temporary file left behind
    after = {path: path.stat().st_mtime_ns for path in RESULTS.rglob("*") if path.is_file()}
    assert after == recorded  # the recorded results are untouched


@pytest.mark.parametrize("script", sorted(CHECKS))
@pytest.mark.parametrize("out", [RESULTS, RESULTS / "dry-run"], ids=["results", "inside"])
def test_dry_run_refuses_to_write_into_the_recorded_results(script, out):
    done = run_script(script, "--dry-run", "--out", str(out))
    assert done.returncode == 2  # argparse's usage error, before anything runs
    assert "--dry-run never writes into the recorded results" in done.stderr
    assert f"Received: --out {out}" in done.stderr
    assert not (RESULTS / "dry-run").exists()
