"""Darknet19 on this CPU, four runtimes side by side: cnnlab's Darknet module (batch norm folded,
channels_last, inference_mode), the same module in plain PyTorch eager (unfolded, no_grad),
OpenCV DNN reading the same cfg and weights, and Debian's ``darknet`` binary.

    python benchmarks/darknet_cpu.py [--repeats 20] [--out benchmarks/results]
    python benchmarks/darknet_cpu.py --dry-run [--out DIR]

darknet19.cfg at 256x256, batch 1, random weights written by cnnlab (the same file for all), the
same letterboxed dog.jpg. Every runtime gets the same threads (all cores, ``--threads``). Each is
warmed up, then timed ``--repeats`` times: wall ms (median) and process CPU ms (median). The
binary runs ``darknet classifier predict`` reading image paths from stdin, one process; its
wall time is the time between its "Predicted in" lines (so it includes loading and letterboxing
the image, a few ms) and its CPU time is what it prints (clock()). The issue's targets: cnnlab at
least as fast as OpenCV DNN, and >= 5x faster than Darknet, in wall time.

``--dry-run``: the same code on a small classifier cfg at 32x32, 2 repeats, JSON into a
temporary folder (or ``--out``), never into benchmarks/results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.darknet import build_network, load_weights, randomize_weights, save_weights
from cnnlab.darknet.classify import letterbox_image, load_image_color
from cnnlab.runtime.context import software_context
from cnnlab.runtime.devices import cpu_name
from cnnlab.runtime.files import write_json

RESULTS = Path(__file__).parent / "results"
NAME = "darknet_cpu.json"
DARKNET = Path("/usr/share/darknet")
TARGETS = {"cnnlab_vs_opencv": 1.0, "cnnlab_vs_darknet": 5.0}  # wall-time speedups
DRY_CFG = """[net]
height=32
width=32
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
filters=10
size=1
stride=1
pad=1
activation=linear
[avgpool]
[softmax]
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="seconds, tiny sizes, same code")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per runtime")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for all")
    parser.add_argument("--out", type=Path, default=None, help=f"folder for {NAME}")
    args = parser.parse_args(argv)
    if args.dry_run and args.out and args.out.resolve().is_relative_to(RESULTS.resolve()):
        parser.error(
            "--dry-run never writes into benchmarks/results. Received: --out " + str(args.out)
        )
    return args


def timed(run, repeats: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append((time.perf_counter() - wall) * 1e3)
        cpus.append((time.process_time() - cpu) * 1e3)
    return {"wall_ms": statistics.median(walls), "cpu_ms": statistics.median(cpus), "runs": repeats}


def time_torch(model, x: torch.Tensor, repeats: int, fast: bool) -> dict[str, float]:
    if fast:
        model.optimize_for_inference()
        x = x.to(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode():
                model(x)
    else:
        model.eval()

        def run():
            with torch.no_grad():
                model(x)

    return timed(run, repeats)


def time_opencv(cfg: Path, weights: Path, x: np.ndarray, repeats: int, threads: int):
    try:
        import cv2
    except ImportError:
        return {"skipped": "opencv-python-headless is not installed"}
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))

    def run():
        net.setInput(x)
        net.forward()

    return timed(run, repeats)


def time_darknet(cfg: Path, weights: Path, image: Path, names: Path, repeats: int, work: Path):
    binary = shutil.which("darknet")
    if binary is None:
        return {"skipped": "Debian's darknet binary is not installed"}
    data = work / "bench.data"
    data.write_text(f"names={names}\ntop=1\n")
    runs = repeats + 2  # the first two are warm-up
    process = subprocess.Popen(
        [binary, "classifier", "predict", str(data), str(cfg), str(weights)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    process.stdin.write("".join(f"{image}\n" for _ in range(runs)))
    process.stdin.close()
    stamps, cpus = [], []
    for line in process.stderr:
        if "Predicted in" in line:
            stamps.append(time.perf_counter())
            cpus.append(float(line.rsplit("in", 1)[1].split()[0]) * 1e3)
    process.wait()
    if len(stamps) < 3:
        return {"skipped": f"darknet printed {len(stamps)} predictions (exit {process.returncode})"}
    walls = np.diff(stamps)[1:] * 1e3  # between predictions, after the warm-up
    return {
        "wall_ms": float(np.median(walls)),
        "cpu_ms": float(np.median(cpus[2:])),
        "runs": len(walls),
        "note": "wall = time between 'Predicted in' lines (includes loading the image)",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (2 if args.dry_run else 20)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="darknet_cpu-"))
    if args.dry_run:
        cfg = work / "small.cfg"
        cfg.write_text(DRY_CFG)
        names = work / "ten.names"
        names.write_text("".join(f"class {i}\n" for i in range(10)))
    else:
        cfg, names = (
            DARKNET / "cfg" / "darknet19.cfg",
            DARKNET / "data" / "imagenet.shortnames.list",
        )
    image = DARKNET / "data" / "dog.jpg"
    weights = save_weights(randomize_weights(build_network(cfg), seed=0), work / "random.weights")
    c, h, w = build_network(cfg).plan.input_shape
    if image.exists():
        x_np = letterbox_image(load_image_color(image), w, h)[None]
    else:
        x_np = np.random.default_rng(0).random((1, c, h, w), dtype=np.float32)
    x = torch.from_numpy(x_np)

    def loaded():
        model = build_network(cfg)
        load_weights(model, weights)
        return model

    results: dict[str, Any] = {
        "cnnlab": time_torch(loaded(), x, repeats, fast=True),
        "pytorch eager": time_torch(loaded(), x, repeats, fast=False),
        "opencv dnn": time_opencv(cfg, weights, x_np, repeats, args.threads),
        "darknet (Debian)": time_darknet(cfg, weights, image, names, repeats, work),
    }
    cnnlab_ms = results["cnnlab"]["wall_ms"]
    speedups = {
        name: row["wall_ms"] / cnnlab_ms for name, row in results.items() if "wall_ms" in row
    }
    print(f"{cfg.name} {h}x{w}, batch 1, {args.threads} threads, {repeats} runs, {cpu_name()}")
    print(f"{'runtime':<18}{'wall ms':>10}{'CPU ms':>10}{'cnnlab is':>12}")
    for name, row in results.items():
        if "skipped" in row:
            print(f"{name:<18}  skipped: {row['skipped']}")
            continue
        print(f"{name:<18}{row['wall_ms']:>10.1f}{row['cpu_ms']:>10.1f}{speedups[name]:>11.2f}x")
    out = args.out or (work if args.dry_run else RESULTS)
    record = {
        "cfg": str(cfg),
        "input": [c, h, w],
        "batch": 1,
        "threads": args.threads,
        "repeats": repeats,
        "dry_run": args.dry_run,
        "results": results,
        "cnnlab_speedup": speedups,
        "targets": TARGETS,
        "context": {**software_context(), "cpu": cpu_name()},
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    path = write_json(Path(out) / NAME, record)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
