"""Detection frames per second end to end at batch 1: what `cnnlab detect FOLDER` does per image
(read the file, letterbox, forward, decode, NMS, draw the boxes and write the PNG), and what
`cnnlab detect VIDEO` does per frame (decode the frame, ..., draw and encode it).

    python benchmarks/detect_fps.py [--images 40] [--repeats 3] [--threads 2] [--run RUN]
                                    [--max-load 1.0] [--wait 600] [--out benchmarks/results]
    python benchmarks/detect_fps.py --dry-run [--out DIR]

Two detectors: ``yolo-scenes`` at 256x256 on 256x256 scenes (the issue's target: >= 30 FPS on
2 cores), as PNGs and as an H.264 MP4 of the same scenes (with PyAV), and ``yolov3-tiny`` at
416x416 on Darknet's sample photos (dog.jpg, eagle.jpg, ... from Debian's darknet package,
500-800 px wide; random 768x576 images without it). The scenes are what `cnnlab data scenes`
makes from Fashion-MNIST's test images (grey PNGs, 1-10 objects of 16-64 px on black; grey
noise with bright rectangles when Fashion-MNIST cannot be found). The weights are seeded
random ones (``--run RUN`` times a trained yolo-scenes run folder instead); random heads call
almost every anchor an object, which no trained detector does, so each head's objectness and
class channels are rescaled (their last convolution is linear) so that about 10 anchors of the
first image score 0.95 and the rest nearly 0, and the boxes per image are recorded with the
timings. Each folder (and the video) is run once to warm up, then ``--repeats`` times; the
FPS is the median of the repeats, with the forward pass's share and the process's CPU time per
image (both threads). The load average and the share of the CPUs other processes
used are recorded: on a shared machine every figure here is slower than on an idle one. Before
measuring, the script waits (checking every 30 s, at most ``--wait`` seconds) for a 1-minute
load average below ``--max-load``, and records whether it got one.

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
    FrameDetections,
    detect_files,
    detect_frames,
    detector_from_checkpoint,
    to_channels,
)
from cnnlab.detect.scene_files import encode_png
from cnnlab.detect.scenes import SceneConfig, generate_split
from cnnlab.models import create_model
from cnnlab.runtime.contention import (
    CpuCounters,
    others_cpu_share,
    steal_cpu_share,
    steal_note,
)
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
    parser.add_argument(
        "--max-load", type=float, default=1.0, help="wait for a 1-minute load average below"
    )
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for it at most")
    args = parser.parse_args(argv)
    for flag in ("images", "repeats", "threads"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be positive. Received: {getattr(args, flag)}")
    refuse_recorded_results(parser, args.dry_run, args.out)
    return args


def scene_images(folder: Path, count: int, size: int) -> tuple[list[Path], str]:
    """``count`` size x size scenes as `cnnlab data scenes` makes them from Fashion-MNIST's test
    images (grey PNGs); grey noise with bright rectangles when Fashion-MNIST is not found."""
    from cnnlab.data import load_dataset

    folder.mkdir(parents=True)
    try:
        data = load_dataset("fashion-mnist", download=False)
    except (FileNotFoundError, ValueError):
        data = None
    if data is not None:
        config = SceneConfig(count=max(count, 2), size=size, seed=0)
        batch = next(generate_split(data.test_images, data.test_labels, count, config, "test"))
        images, what = batch.images, f"fashion-mnist scenes ({data.source}), {size}x{size} grey"
    else:
        generator = np.random.default_rng(0)
        images = generator.integers(0, 60, (count, 3, size, size), dtype=np.uint8)
        for pixels in images:
            for _ in range(generator.integers(1, 6)):
                side = int(generator.integers(size // 16, size // 4))
                x, y = generator.integers(0, size - side, 2)
                pixels[:, y : y + side, x : x + side] = generator.integers(120, 256, (3, 1, 1))
        what = f"grey noise with bright rectangles, {size}x{size} RGB (no fashion-mnist)"
    paths = []
    for index, pixels in enumerate(images):
        paths.append(folder / f"scene{index:03d}.png")
        paths[-1].write_bytes(encode_png(pixels))
    return paths, what


def scene_video(path: Path, images: list[Path]) -> Path | None:
    """The images as an H.264 MP4 at 25 FPS (None without PyAV)."""
    try:
        import av
    except ImportError:
        return None
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        first = load_image_rgb8(images[0])
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        for index, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(load_image_rgb8(image), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


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


def run_video(detector: Detector, video: Path, out: Path) -> list[FrameDetections]:
    """`cnnlab detect VIDEO --out OUT`: every frame read, detected, drawn and encoded."""
    from cnnlab.detect.video import VideoWriter, video_frames, video_rate

    writer = VideoWriter(out / f"{video.stem}.mp4", detector.names, detector.classes)
    writer.rate = video_rate(video)
    results = list(detect_frames(detector, video_frames(video), writer))
    writer.close()
    return results


def time_passes(run, count: int, repeats: int) -> dict[str, Any]:
    """``run()`` (one pass over ``count`` frames) once to warm up, then ``repeats`` times."""
    run()
    passes = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        results = run()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        forward = sum(r.detections.seconds for r in results)
        boxes = sum(len(r.detections.rows) for r in results)
        assert len(results) == count, (len(results), count)
        passes.append(
            {"seconds": elapsed, "cpu_seconds": cpu, "forward_seconds": forward, "boxes": boxes}
        )
    fps = [count / p["seconds"] for p in passes]
    best = passes[int(np.argsort(fps)[len(fps) // 2])]  # the median pass
    return {
        "images": count,
        "fps": statistics.median(fps),
        "fps_runs": fps,
        "ms_per_image": 1000 * best["seconds"] / count,
        "forward_ms_per_image": 1000 * best["forward_seconds"] / count,
        "cpu_ms_per_image": 1000 * best["cpu_seconds"] / count,
        "boxes_per_image": best["boxes"] / count,
    }


def wait_for_quiet(max_load: float, wait: float) -> dict[str, Any]:
    """Sleep in 30 s steps (at most ``wait`` seconds) until the 1-minute load average is below
    ``max_load``; what was seen."""
    start = time.monotonic()
    seen = [os.getloadavg()[0]]
    while seen[-1] >= max_load and time.monotonic() - start + 30 <= wait:
        print(f"load average {seen[-1]:.2f} >= {max_load}: waiting 30 s", flush=True)
        time.sleep(30)
        seen.append(os.getloadavg()[0])
    return {
        "max_load": max_load,
        "waited_seconds": round(time.monotonic() - start, 1),
        "quiet": seen[-1] < max_load,
        "loadavg_1min_seen": seen,
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
    scene_files, scene_what = scene_images(work / "scenes", count, 256)
    photos = photo_images(work, count)
    if source == random:
        quiet_heads(scenes, scene_files[0])
    tiny_detector = Detector(tiny.optimize_for_inference())
    quiet_heads(tiny_detector, photos[0])
    video = scene_video(work / "scenes.mp4", scene_files)

    def folder(detector: Detector, files: list[Path], name: str):
        return lambda: list(detect_files(detector, files, work / f"png-{name}"))

    cases = [
        ("yolo-scenes", "PNG files", scenes, folder(scenes, scene_files, "scenes"), source,
         scene_what),
        ("yolov3-tiny", "JPEG files", tiny_detector, folder(tiny_detector, photos, "tiny"), random,
         "Darknet's sample photos" if photos[0].parent == PHOTOS else "random 768x576 JPEGs"),
    ]  # fmt: skip
    if video is not None:
        cases.insert(
            1,
            ("yolo-scenes", "H.264 video", scenes,
             lambda: run_video(scenes, video, work / "video"), source, f"{scene_what}, as MP4"),
        )  # fmt: skip
    quiet = wait_for_quiet(args.max_load, 0 if args.dry_run else args.wait)
    load_before, counters = os.getloadavg(), CpuCounters.read()
    results = []
    for name, input_kind, detector, run, weights, images in cases:
        row = time_passes(run, count, repeats)
        c, h, w = detector.network.plan.input_shape
        results.append(
            {"model": name, "input": [c, h, w], "source": input_kind, "images_used": images,
             "weights": weights, **row}
        )  # fmt: skip
    end = CpuCounters.read()
    share, steal = others_cpu_share(counters, end), steal_cpu_share(counters, end)
    load = {
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "others_cpu_share": share,
        "steal_cpu_share": steal,  # the part of others' share the hypervisor took
        "wait": quiet,
    }
    print(f"batch 1, {args.threads} threads, {repeats} repeats, {cpu_name()}")
    print(
        f"load average {load_before[0]:.2f} before, {load['loadavg_after'][0]:.2f} after"
        + (f"; other processes used {share:.0%} of the CPUs" if share is not None else "")
        + steal_note(steal)
    )
    print(
        f"{'model':<13}{'input':>10}  {'from':<12}{'FPS':>7}{'ms/image':>10}{'forward ms':>12}"
        f"{'CPU ms':>8}{'boxes':>7}"
    )
    for row in results:
        size = f"{row['input'][1]}x{row['input'][2]}"
        print(
            f"{row['model']:<13}{size:>10}  {row['source']:<12}{row['fps']:>7.1f}"
            f"{row['ms_per_image']:>10.1f}{row['forward_ms_per_image']:>12.1f}"
            f"{row['cpu_ms_per_image']:>8.1f}{row['boxes_per_image']:>7.1f}"
        )
    print("end to end: read, letterbox, forward, decode, NMS, draw and write the PNG / encode")
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
        "excluded": "model loading and building; making the inputs; one warm-up pass of each",
        "results": results,
    }
    path = write_json(out / NAME, data)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
