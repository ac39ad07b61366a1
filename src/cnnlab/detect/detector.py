"""A detector: a Darknet network with ``[region]``/``[yolo]`` heads and Darknet's decode settings.

``Detector.detect`` does what ``darknet detect`` does for one image (examples/detector.c,
test_detector): load RGB in [0, 1], letterbox to the network's input, run the network, decode
every head with the threshold (0.5 by default), map the boxes back to the original image, and
NMS per class (0.45). Its result is a (K, 6) tensor x1, y1, x2, y2, score, class in
original-image pixels, highest score first (``cnnlab.detect.metrics`` reads this).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.darknet.classify import letterbox_image, load_image_rgb8, unit_float
from cnnlab.darknet.network import DarknetNet, build_network
from cnnlab.darknet.weights import load_weights
from cnnlab.detect.decode import (
    correct_boxes,
    detection_heads,
    head_detections,
    to_pixel_corners,
)
from cnnlab.detect.draw import draw_boxes, save_png
from cnnlab.detect.nms import do_nms_sort, score_rows
from cnnlab.runtime.validate import check_number

DEFAULT_THRESH = 0.5  # test_detector's -thresh
DEFAULT_NMS = 0.45  # test_detector's nms


@dataclass(frozen=True)
class ImageDetections:
    """One image's detections: ``rows`` (K, 6) x1, y1, x2, y2, score, class in pixels of the
    ``size`` = (height, width) image; ``seconds`` is the network's forward pass alone (the time
    Darknet prints)."""

    image: str
    size: tuple[int, int]
    rows: torch.Tensor
    seconds: float

    def __repr__(self) -> str:
        height, width = self.size
        return f"ImageDetections({self.image!r}, {width}x{height}, {len(self.rows)} boxes)"


def to_channels(rgb8: np.ndarray, channels: int) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image as the network's input (C, H, W) float32 in [0, 1]: the
    8-bit values / 255 for 3 channels, PIL's grey (L = 0.299 R + 0.587 G + 0.114 B) for 1."""
    if channels == 3:
        return unit_float(rgb8)
    if channels != 1:
        raise ValueError(f"cnnlab detects in 1- or 3-channel images, not {channels} channels")
    return unit_float(np.asarray(Image.fromarray(rgb8).convert("L"))[:, :, None])


class Detector:
    """``network`` with its heads, class ``names`` and thresholds; ``mean``/``std`` normalise
    the [0, 1] input per channel (0 and 1 for Darknet's own files). The network is put in eval
    mode; ``from_darknet`` and ``detector_from_checkpoint`` also fold its batch norms
    (``optimize_for_inference``), as they own it."""

    def __init__(
        self,
        network: DarknetNet,
        names: list[str] | None = None,
        *,
        thresh: float = DEFAULT_THRESH,
        nms: float = DEFAULT_NMS,
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
    ) -> None:
        check_number("thresh", thresh, 0.0, 1.0, "a score threshold in [0, 1)")
        check_number("nms", nms, 0.0, math.nextafter(1.0, 2.0), "an IoU threshold in [0, 1]")
        self.network = network.eval()
        self.heads = detection_heads(network.plan)
        self.classes = self.heads[0].classes
        names = list(names) if names is not None else [str(i) for i in range(self.classes)]
        if len(names) < self.classes:
            raise ValueError(
                f"names has {len(names)} class names but the network detects {self.classes} "
                "classes; expected one name per class"
            )
        self.names = names
        self.thresh, self.nms = float(thresh), float(nms)
        # For evaluation (evaluate_detector), None in Darknet's own use: the most boxes per
        # image NMS looks at (the best by any class score), and the most it keeps per class
        # and per image (the best).
        self.candidates: int | None = None
        self.keep_per_class: int | None = None
        self.channels, height, width = network.plan.input_shape
        self.net_size = (height, width)
        self._mean = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        self._normalizes = bool((self._mean != 0).any() or (self._std != 1).any())

    @classmethod
    def from_darknet(
        cls, cfg: str | os.PathLike[str], weights: str | os.PathLike[str], **settings
    ) -> Detector:
        """A detector from Darknet's .cfg and .weights files (every weight must be there)."""
        network = build_network(cfg)
        info = load_weights(network, weights)
        if not info.complete:
            raise ValueError(f"{weights}: {info.describe()}; a detector needs all its weights")
        return cls(network.optimize_for_inference(), **settings)

    def __repr__(self) -> str:
        c, (h, w) = self.channels, self.net_size
        kinds = ",".join(head.kind.value for head in self.heads)
        return (
            f"Detector({self.network.plan.cfg.source!r}, input={c}x{h}x{w}, heads={kinds}, "
            f"classes={self.classes}, thresh={self.thresh}, nms={self.nms})"
        )

    def raw_outputs(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Each head's raw map for a letterboxed batch (N, C, H, W) in [0, 1]."""
        if self._normalizes:
            batch = (batch - self._mean) / self._std
        batch = batch.contiguous(memory_format=torch.channels_last)
        layers = tuple(head.layer for head in self.heads)
        with torch.inference_mode():
            outputs = self.network.forward_layers(batch, layers)
        return [outputs[layer] for layer in layers]

    def postprocess(
        self, raws: list[torch.Tensor], sizes: list[tuple[int, int]]
    ) -> list[torch.Tensor]:
        """Decode, threshold, undo the letterbox and NMS: one (K, 6) tensor per image of
        ``sizes`` (height, width each)."""
        results = []
        for index, size in enumerate(sizes):
            found = [
                head_detections(head, raw[index], self.net_size, self.thresh)
                for head, raw in zip(self.heads, raws, strict=True)
            ]
            boxes, scores = torch.cat([b for b, _ in found]), torch.cat([s for _, s in found])
            if self.candidates is not None and len(boxes) > self.candidates:
                best = scores.max(dim=1).values.topk(self.candidates).indices.sort().values
                boxes, scores = boxes[best], scores[best]
            boxes = correct_boxes(boxes.double(), size, self.net_size)
            kept = do_nms_sort(boxes, scores, self.nms, keep_per_class=self.keep_per_class)
            rows = score_rows(to_pixel_corners(boxes, size), kept)  # best first
            results.append(rows if self.keep_per_class is None else rows[: self.keep_per_class])
        return results

    def letterbox(self, image: np.ndarray) -> torch.Tensor:
        """(C, H, W) in [0, 1] -> the network's letterboxed input (C, net_h, net_w)."""
        height, width = self.net_size
        if image.shape[1:] == (height, width):  # Darknet's resize at scale 1 copies each pixel
            return torch.from_numpy(image)
        return torch.from_numpy(letterbox_image(image, width, height))

    def detect_array(self, image: np.ndarray, name: str = "<array>") -> ImageDetections:
        """Detections in one (C, H, W) float32 image in [0, 1]."""
        if image.ndim != 3 or image.shape[0] != self.channels:
            raise ValueError(
                f"expected an image of shape ({self.channels}, H, W), got {tuple(image.shape)}"
            )
        batch = self.letterbox(image)[None]
        start = time.perf_counter()
        raws = self.raw_outputs(batch)
        seconds = time.perf_counter() - start
        size = (int(image.shape[1]), int(image.shape[2]))
        return ImageDetections(name, size, self.postprocess(raws, [size])[0], seconds)

    def detect_rgb8(self, pixels: np.ndarray, name: str = "<array>") -> ImageDetections:
        """Detections in one (H, W, 3) uint8 RGB image (a decoded file or video frame)."""
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(
                f"expected an RGB image of shape (H, W, 3) and dtype uint8, got "
                f"{tuple(pixels.shape)} {pixels.dtype}"
            )
        return self.detect_array(to_channels(pixels, self.channels), name)

    def detect(self, path: str | os.PathLike[str]) -> ImageDetections:
        """Detections in one image file, as ``darknet detect`` finds them."""
        return self.detect_rgb8(load_image_rgb8(path), str(path))


@dataclass(frozen=True)
class FrameDetections:
    """One image's or video frame's detections, the file its drawing went to (a PNG, the
    video, or None) and its share of the end-to-end time: the seconds since the frame before
    was done (the first: since the start), so that they add up to the wall time of read,
    letterbox, forward, decode, NMS, draw and write."""

    detections: ImageDetections
    output: Path | None
    total_seconds: float


# draws a frame's boxes and writes it (a PNG, or the next frame of a video): the file
FrameWriter = Callable[[str, np.ndarray, torch.Tensor], Path]


def detect_frames(
    detector: Detector,
    frames: Iterable[tuple[str, np.ndarray]],
    write: FrameWriter | None = None,
) -> Iterator[FrameDetections]:
    """Detect in each (name, (H, W, 3) uint8) frame in turn, as a pipeline of two threads:
    this one runs the network, decodes and NMS (torch), a second one reads the next frame and
    draws and writes the one before (Pillow's decoders, zlib and the video codec release the
    GIL, so both cores work). Frames are read, written and yielded in order; a frame is
    yielded once its drawing is written."""
    iterator = iter(frames)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlab-io") as io:
        clock = time.perf_counter()
        reading = io.submit(next, iterator, None)
        pending: tuple[ImageDetections, Future | None] | None = None
        while True:
            frame = reading.result()
            if frame is not None:
                reading = io.submit(next, iterator, None)  # queued after the last write
                name, pixels = frame
                found = detector.detect_rgb8(pixels, name)
                job = None if write is None else io.submit(write, name, pixels, found.rows)
            if pending is not None:
                done, done_job = pending
                output = None if done_job is None else done_job.result()
                now = time.perf_counter()
                yield FrameDetections(done, output, now - clock)
                clock = now
            if frame is None:
                return
            pending = (found, job)


def image_frames(paths: Iterable[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, (H, W, 3) uint8) of each image file, read when asked for."""
    for path in paths:
        yield str(path), load_image_rgb8(path)


def png_writer(detector: Detector, out: Path) -> FrameWriter:
    """Draw each image's boxes into ``out``/NAME.png (NAME-2.png, ... when two inputs share
    a name)."""
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()

    def write(name: str, pixels: np.ndarray, rows: torch.Tensor) -> Path:
        stem, count = Path(name).stem, 1
        while (unique := stem if count == 1 else f"{stem}-{count}") in used:
            count += 1
        used.add(unique)
        drawn = draw_boxes(Image.fromarray(pixels), rows, detector.names, detector.classes)
        return save_png(drawn, out / f"{unique}.png")

    return write


def detect_files(
    detector: Detector, paths: list[Path], out: Path | None = None
) -> Iterator[FrameDetections]:
    """Detect in each image file in turn; with ``out``, draw each image's boxes into
    ``out``/NAME.png."""
    write = None if out is None else png_writer(detector, out)
    return detect_frames(detector, image_frames(paths), write)


def detector_from_checkpoint(path: str | os.PathLike[str], **settings) -> Detector:
    """The detector of a run folder or checkpoint whose model is a zoo detector (its name and
    arguments in the checkpoint, as classification runs hold theirs)."""
    from cnnlab.darknet.convert import load_run_model

    run = load_run_model(path)
    if not isinstance(run.model, DarknetNet) or run.model.cnnlab.output != "detections":
        raise ValueError(
            f"{Path(path)} holds model {run.model.cnnlab.name!r}, which is not a detector: "
            "expected a detection zoo model (cnnlab models 'yolo*')"
        )
    normalization = {} if run.mean is None else {"mean": run.mean, "std": run.std}
    return Detector(run.model.optimize_for_inference(), run.classes, **normalization, **settings)
