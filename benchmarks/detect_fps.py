"""Detection frames per second end to end at batch 1: what `cnnlab detect FOLDER` does per image
(read the file, letterbox, forward, decode, NMS, draw the boxes and write the PNG).

    python benchmarks/detect_fps.py [--images 40] [--repeats 3] [--threads 2] [--run RUN]
                                    [--out benchmarks/results]
    python benchmarks/detect_fps.py --dry-run [--out DIR]

Two detectors: ``yolo-scenes`` at 256x256 on 256x256 scene-sized images (the issue's target:
>= 30 FPS on 2 cores), and ``yolov3-tiny`` at 416x416 on Darknet's sample photos (dog.jpg,
eagle.jpg, ... from Debian's darknet package, 500-800 px wide; random 768x576 images without
it). The weights are seeded random ones (``--run RUN`` times a trained yolo-scenes run folder
instead); random heads call almost every anchor an object, which no trained detector does, so
each head's objectness and class channels are rescaled (their last convolution is linear) so
that about 10 anchors of the first image score 0.95 and the rest nearly 0, and the boxes per
image are recorded with the timings. Each folder is run once to warm up, then ``--repeats``
times; the FPS is the median of the repeats, with the forward pass's share and the process's
CPU time per image (both threads). The load average and the share of the CPUs other processes
used are recorded: on a shared machine every figure here is slower than on an idle one.

``--dry-run``: the same code at 64x64 inputs, 3 images, 1 repeat, JSON into a temporary folder
(or ``--out``), never into benchmarks/results.
"""

from __future__ import annotations

import os

# Passive OpenMP threads, set before torch starts (see benchmarks/infer_cpu.py); in the JSON.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from _dry_run import RESULTS, refuse_recorded_results  # benchmarks/ is on sys.path
from cnnlab.darknet import randomize_weights
from cnnlab.darknet.classify import letterbox_image, load_image_rgb8
from cnnlab.detect.detector import (
    Detector,
    detect_files,
    detector_from_checkpoint,
    to_channels,
)
from cnnlab.models import create_model
from cnnlab.runtime.contention import CpuCounters, others_cpu_share
from cnnlab.runtime.context import software_context
from cnnlab.runtime.devices import cpu_name
from cnnlab.runtime.files import write_json

NAME = "detect_fps.json"
PHOTOS = Path("/usr/share/darknet/data")
PHOTO_NAMES = ("dog", "eagle", "giraffe", "horses", "kite", "person", "scream")
TARGET_FPS = 30.0  # the target for the 256x256 model at batch 1 on 2 cores
CANDIDATES = 10  # anchors of the first image kept above 0.5 objectness


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="seconds, tiny sizes, same code")
    parser.add_argument("--images", type=int, default=40, help="images per folder")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over each folder")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--run", type=Path, help="a trained yolo-scenes run folder to time")
    parser.add_argument("--out", type=Path, help="folder for the JSON (default: results)")
    args = parser.parse_args(argv)
    for flag in ("images", "repeats", "threads"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be positive. Received: {getattr(args, flag)}")
    refuse_recorded_results(parser, args.dry_run, args.out)
    return args


def scene_images(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` size x size scenes: grey noise with a few bright rectangles (objects)."""
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    paths = []
    for index in range(count):
        pixels = generator.integers(0, 60, (size, size, 3), dtype=np.uint8)
        for _ in range(generator.integers(1, 6)):
            side = int(generator.integers(size // 16, size // 4))
            x, y = generator.integers(0, size - side, 2)
            pixels[y : y + side, x : x + side] = generator.integers(120, 256, 3, dtype=np.uint8)
        paths.append(folder / f"scene{index:03d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def photo_images(folder: Path, count: int) -> list[Path]:
    """Darknet's sample photos, cycled to ``count`` (random 768x576 images without them)."""
    photos = [PHOTOS / f"{name}.jpg" for name in PHOTO_NAMES if (PHOTOS / f"{name}.jpg").exists()]
    if not photos:
        generator = np.random.default_rng(1)
        for index in range(len(PHOTO_NAMES)):
            photos.append(folder / f"photo{index}.jpg")
            Image.fromarray(generator.integers(0, 256, (576, 768, 3), dtype=np.uint8)).save(
                photos[-1]
            )
    return [photos[index % len(photos)] for index in range(count)]


def separate(values: torch.Tensor, count: int) -> tuple[float, float]:
    """(scale, centre) mapping the ``count`` largest values to logits >= 3 and the rest <= -3:
    logit' = scale * (logit - centre)."""
    ranked = values.flatten().sort(descending=True).values
    low, high = ranked[count].item(), ranked[count - 1].item()
    centre = (low + high) / 2
    return max(1.0, 3.0 / max((high - low) / 2, 1e-6)), centre


@torch.no_grad()
def quiet_heads(detector: Detector, image: Path) -> None:
    """Rescale the heads' objectness and class channels (their last convolution is linear) so
    that on ``image`` the CANDIDATES anchors of highest objectness, and the CANDIDATES highest
    classes among them, have logits >= 3 (0.95) and the rest <= -3: as many boxes as a trained
    detector reports, not the thousands random heads give."""
    rgb = to_channels(load_image_rgb8(image), detector.channels)
    height, width = detector.net_size
    raws = detector.raw_outputs(torch.from_numpy(letterbox_image(rgb, width, height))[None])
    objectness, classes = [], []
    for head, raw in zip(detector.heads, raws, strict=True):
        maps = raw[0].reshape(len(head.anchors), head.entries, -1)  # (A, 5 + C, H * W)
        objectness.append(maps[:, 4].flatten())
        classes.append(maps[:, 5:].permute(0, 2, 1).reshape(-1, head.classes))
    objectness, classes = torch.cat(objectness), torch.cat(classes)
    rescale = {4: separate(objectness, CANDIDATES)}
    top = objectness.topk(CANDIDATES).indices
    class_scale = separate(classes[top], CANDIDATES)
    for head in detector.heads:
        conv = detector.network.layers[head.layer - 1].conv
        weight = conv.weight.view(len(head.anchors), head.entries, -1)
        bias = conv.bias.view(len(head.anchors), head.entries)
        channels = {**rescale, **dict.fromkeys(range(5, head.entries), class_scale)}
        for channel, (scale, centre) in channels.items():
            weight[:, channel] *= scale
            bias[:, channel] = scale * (bias[:, channel] - centre)


def time_folder(detector: Detector, files: list[Path], out: Path, repeats: int) -> dict[str, Any]:
    list(detect_files(detector, files, out))  # warm-up pass
    passes = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        results = list(detect_files(detector, files, out))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        forward = sum(r.detections.seconds for r in results)
        boxes = sum(len(r.detections.rows) for r in results)
        passes.append(
            {"seconds": elapsed, "cpu_seconds": cpu, "forward_seconds": forward, "boxes": boxes}
        )
    fps = [len(files) / p["seconds"] for p in passes]
    best = passes[int(np.argsort(fps)[len(fps) // 2])]  # the median pass
    return {
        "images": len(files),
        "fps": statistics.median(fps),
        "fps_runs": fps,
        "ms_per_image": 1000 * best["seconds"] / len(files),
        "forward_ms_per_image": 1000 * best["forward_seconds"] / len(files),
        "cpu_ms_per_image": 1000 * best["cpu_seconds"] / len(files),
        "boxes_per_image": best["boxes"] / len(files),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    count, repeats = (3, 1) if args.dry_run else (args.images, args.repeats)
    work = Path(tempfile.mkdtemp(prefix="detect_fps-"))
    scene_size, tiny_size = (64, 64) if args.dry_run else (256, 416)
    random = "seeded random (seed 0), objectness bias shifted"
    if args.run is not None:
        scenes, source = detector_from_checkpoint(args.run), f"trained: {args.run}"
    else:
        model = randomize_weights(create_model("yolo-scenes", size=scene_size), seed=0)
        scenes, source = Detector(model.optimize_for_inference()), random
    tiny = randomize_weights(create_model("yolov3-tiny", size=tiny_size), seed=0)
    cases = [
        ("yolo-scenes", scenes, scene_images(work / "scenes", count, 256), source),
        ("yolov3-tiny", Detector(tiny.optimize_for_inference()), photo_images(work, count), random),
    ]
    load_before, counters = os.getloadavg(), CpuCounters.read()
    results = []
    for name, detector, files, weights in cases:
        if weights == random:
            quiet_heads(detector, files[0])
        row = time_folder(detector, files, work / f"png-{name}", repeats)
        c, h, w = detector.network.plan.input_shape
        results.append({"model": name, "input": [c, h, w], "weights": weights, **row})
    share = others_cpu_share(counters, CpuCounters.read())
    load = {
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "others_cpu_share": share,
    }
    print(f"batch 1, {args.threads} threads, {repeats} repeats, {cpu_name()}")
    print(
        f"load average {load_before[0]:.2f} before, {load['loadavg_after'][0]:.2f} after"
        + (f"; other processes used {share:.0%} of the CPUs" if share is not None else "")
    )
    print(
        f"{'model':<13}{'input':>10}{'FPS':>8}{'ms/image':>10}{'forward ms':>12}{'CPU ms':>8}"
        f"{'boxes':>7}"
    )
    for row in results:
        size = f"{row['input'][1]}x{row['input'][2]}"
        print(
            f"{row['model']:<13}{size:>10}{row['fps']:>8.1f}{row['ms_per_image']:>10.1f}"
            f"{row['forward_ms_per_image']:>12.1f}{row['cpu_ms_per_image']:>8.1f}"
            f"{row['boxes_per_image']:>7.1f}"
        )
    print("end to end: read, letterbox, forward, decode, NMS, draw and write the PNG")
    out = args.out or (work if args.dry_run else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "context": {**software_context(), "cpu": cpu_name(), "cpu_count": os.cpu_count()},
        "dry_run": args.dry_run,
        "batch": 1,
        "threads": args.threads,
        "repeats": repeats,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "target_fps_256": TARGET_FPS,
        "load": load,
        "excluded": "model loading and building; one warm-up pass over each folder",
        "results": results,
    }
    path = write_json(out / NAME, data)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
