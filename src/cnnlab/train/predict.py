"""Use a trained model: load a checkpoint, classify image files, write leaderboard predictions.

``load(run)`` rebuilds the model of a run folder (or of a checkpoint file) with its weights and
everything needed to feed it as in training: the class names, the normalisation and the input
adapter from the data shape to the model's input. ``prepare_image`` turns any picture into an
image of the training data's shape (grey or RGB, letterboxed to H x W); ``predict_files`` does
both and times each forward pass, as Darknet's ``classify`` does.
"""

from __future__ import annotations

import csv
import io
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from cnnlab.data.device import InputAdapter, Normalization, preprocess
from cnnlab.runtime.devices import resolve_device, synchronize
from cnnlab.runtime.files import atomic_write
from cnnlab.train.checkpoint import checkpoint_file, load_checkpoint, rebuild_model

# What a folder given to predict_files contributes: the files Pillow reads by these names.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
TRANSPARENT_BACKGROUND = (255, 255, 255)  # what a transparent pixel shows: white paper


@dataclass(frozen=True, repr=False)
class Predictor:
    """A trained model ready to classify uint8 images of the data it was trained on."""

    model: nn.Module  # in eval mode, on ``device``
    classes: tuple[str, ...]
    normalization: Normalization
    adapter: InputAdapter  # data_shape -> the model's input shape
    data_shape: tuple[int, int, int]  # (C, H, W) of the training images
    device: torch.device
    model_name: str = ""
    data_name: str = ""  # the dataset the model was trained on
    checkpoint: Path | None = None

    def __repr__(self) -> str:
        c, h, w = self.data_shape
        return (
            f"Predictor({self.model_name!r}, trained on {self.data_name!r}, "
            f"{len(self.classes)} classes, images {c}x{h}x{w}, device={self.device})"
        )

    def predict(self, images: torch.Tensor | np.ndarray, *, batch_size: int = 1024) -> torch.Tensor:
        """Class probabilities (N, classes) on the CPU for uint8 images (N, C, H, W)."""
        batch = torch.as_tensor(images)
        if (
            batch.dtype != torch.uint8
            or batch.dim() != 4
            or tuple(batch.shape[1:]) != self.data_shape
        ):
            c, h, w = self.data_shape
            raise ValueError(
                f"images must be uint8 of shape (N, {c}, {h}, {w}), like the training data. "
                f"Received: dtype={batch.dtype}, shape={tuple(batch.shape)}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"batch_size must be a positive integer. Received: batch_size={batch_size!r}"
            )
        chunks = []
        with torch.inference_mode():
            for first in range(0, batch.shape[0], batch_size):
                part = batch[first : first + batch_size].to(self.device)
                logits = self.model(preprocess(part, self.normalization, self.adapter))
                chunks.append(logits.float().softmax(dim=1).cpu())  # the model returns logits
        return torch.cat(chunks) if chunks else torch.zeros(0, len(self.classes))

    def top_k(self, images: torch.Tensor | np.ndarray, k: int = 5) -> list[list[tuple[float, str]]]:
        """The ``k`` most probable classes of each image, as (probability, class name), best first.

        ``k`` larger than the number of classes lists them all.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer. Received: k={k!r}")
        values, indices = self.predict(images).topk(min(k, len(self.classes)), dim=1)
        return [
            [(float(p), self.classes[i]) for p, i in zip(row_p, row_i, strict=True)]
            for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
        ]


def load(path: str | os.PathLike[str], *, device: str | torch.device = "auto") -> Predictor:
    """The model of a run folder or checkpoint file with its weights, in eval mode on ``device``."""
    file = checkpoint_file(path)
    checkpoint = load_checkpoint(file, map_location="cpu")
    try:
        info, data = checkpoint["model"], checkpoint["data"]
        name = info["name"]
        model_shape = tuple(int(v) for v in info["input_shape"])
        data_shape = tuple(int(v) for v in data["shape"])
        normalization = Normalization(
            tuple(data["normalization"]["mean"]), tuple(data["normalization"]["std"])
        )
        classes = tuple(str(c) for c in data["classes"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{file} is an incomplete cnnlab checkpoint: cannot read its model or data "
            f"description ({type(error).__name__}: {error})"
        ) from None
    target = _device(device)
    model = rebuild_model(checkpoint, file)
    model.to(target).eval()
    return Predictor(
        model=model,
        classes=classes,
        normalization=normalization,
        adapter=InputAdapter(data_shape, model_shape),
        data_shape=data_shape,
        device=target,
        model_name=name,
        data_name=str(data.get("name", "")),
        checkpoint=file,
    )


def prepare_image(
    path: str | os.PathLike[str], data_shape: Sequence[int], *, invert: bool = False
) -> torch.Tensor:
    """Any picture as a uint8 image (C, H, W) of the training data's shape.

    Grey for one channel, RGB for three. The picture is scaled to fit H x W keeping its aspect
    ratio, and the rest is filled with its own background (the median of its border), so a
    drawing is not stretched. Transparent pixels count as white paper. ``invert`` turns dark
    drawings on light paper into the light-on-dark digits of MNIST-style data.
    """
    shape = tuple(data_shape)
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise ValueError(
            f"data_shape must be (C, H, W), three positive integers. Received: {shape}"
        )
    channels, height, width = shape
    if channels not in (1, 3):
        raise ValueError(
            f"data_shape must have 1 (grey) or 3 (RGB) channels. Received: data_shape={shape}"
        )
    picture = _open_image(Path(path))
    picture = ImageOps.exif_transpose(picture)  # photos from phones are stored rotated
    if "A" in picture.getbands() or "transparency" in picture.info:
        paper = Image.new("RGBA", picture.size, (*TRANSPARENT_BACKGROUND, 255))
        picture = Image.alpha_composite(paper, picture.convert("RGBA"))
    picture = picture.convert("L" if channels == 1 else "RGB")
    background = _border_median(np.asarray(picture))
    scale = min(width / picture.width, height / picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    canvas = Image.new(picture.mode, (width, height), background)
    offset = ((width - size[0]) // 2, (height - size[1]) // 2)
    canvas.paste(picture.resize(size, Image.Resampling.LANCZOS), offset)
    if invert:
        canvas = ImageOps.invert(canvas)
    pixels = torch.from_numpy(np.array(canvas, dtype=np.uint8))  # (H, W) or (H, W, 3)
    return pixels[None] if channels == 1 else pixels.permute(2, 0, 1).contiguous()


@dataclass(frozen=True, repr=False)
class FilePrediction:
    """One file's result: the top classes and the forward pass's time, or why it failed."""

    path: Path
    seconds: float | None = None  # the forward pass alone, as Darknet reports it
    top: tuple[tuple[float, str], ...] = ()  # (probability, class name), best first
    error: str | None = None
    batch: int = 1  # images in its forward pass; ``seconds`` is then the pass's share per image

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "seconds": self.seconds,
            "top": [{"probability": p, "class": name} for p, name in self.top],
            "error": self.error,
            "batch": self.batch,
        }

    def __repr__(self) -> str:
        if self.error is not None:
            return f"FilePrediction({str(self.path)!r}, error={self.error!r})"
        best = f"{self.top[0][1]!r} {self.top[0][0]:.2%}" if self.top else "-"
        return f"FilePrediction({str(self.path)!r}, {best}, {self.seconds:.6f} s)"


def image_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files to classify: each path as given, a folder as its image files (sorted by name,
    not recursive, hidden files left out). A folder without images is an error."""
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(
            entry
            for entry in path.iterdir()
            if entry.suffix.lower() in IMAGE_SUFFIXES
            and not entry.name.startswith(".")
            and entry.is_file()
        )
        if not found:
            raise ValueError(
                f"{path} holds no image files: expected {', '.join(sorted(IMAGE_SUFFIXES))}"
            )
        files.extend(found)
    return files


def predict_files(
    predictor: Predictor,
    paths: Iterable[str | os.PathLike[str]],
    *,
    top: int = 5,
    invert: bool = False,
    batch_size: int = 1,
) -> list[FilePrediction]:
    """Classify image files (folders give their images), ``batch_size`` per forward pass.

    A file that cannot be read gets an error entry, not an error. With ``batch_size`` 1 each
    result's ``seconds`` is its own forward pass, as Darknet prints it; with more, the pass's
    time divided by its images.
    """
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top must be a positive integer. Received: top={top!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(
            f"batch_size must be a positive integer. Received: batch_size={batch_size!r}"
        )
    files = image_files(paths)
    results: dict[int, FilePrediction] = {}
    k = min(top, len(predictor.classes))
    for first in range(0, len(files), batch_size):
        ready: list[tuple[int, torch.Tensor]] = []
        for index in range(first, min(first + batch_size, len(files))):
            try:
                ready.append(
                    (index, prepare_image(files[index], predictor.data_shape, invert=invert))
                )
            except (ValueError, FileNotFoundError) as error:
                results[index] = FilePrediction(files[index], error=str(error))
        if not ready:
            continue
        batch = torch.stack([image for _, image in ready])
        synchronize(predictor.device)
        start = time.perf_counter()
        probabilities = predictor.predict(batch, batch_size=len(ready))  # .cpu() waits
        seconds = (time.perf_counter() - start) / len(ready)
        values, indices = probabilities.topk(k, dim=1)
        for (index, _), row_p, row_i in zip(ready, values.tolist(), indices.tolist(), strict=True):
            best = tuple(
                (float(p), predictor.classes[i]) for p, i in zip(row_p, row_i, strict=True)
            )
            results[index] = FilePrediction(files[index], seconds, best, batch=len(ready))
    return [results[index] for index in range(len(files))]


def write_file_predictions(
    results: Sequence[FilePrediction], classes: Sequence[str], path: str | os.PathLike[str]
) -> Path:
    """A CSV of ``predict_files``' results: ``path,label,class,probability,error``, one row per
    file in order (``label`` is the class index; a file that failed has only its error)."""
    index = {name: i for i, name in enumerate(classes)}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "label", "class", "probability", "error"])
    for result in results:
        if result.ok and result.top:
            probability, name = result.top[0]
            writer.writerow([result.path, index[name], name, f"{probability:.6f}", ""])
        else:
            writer.writerow([result.path, "", "", "", result.error or ""])
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, lambda file: file.write(text.getvalue().encode()))


def write_predictions(predictions: np.ndarray | torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """The leaderboard's CSV: a header ``id,label``, then one row per test image in order.

    ``predictions`` holds one class index per image; the id is the image's position in the set.
    """
    labels = np.asarray(predictions.cpu() if isinstance(predictions, torch.Tensor) else predictions)
    if labels.ndim != 1 or labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        hint = " (take argmax over the classes first)" if labels.ndim == 2 else ""
        raise ValueError(
            "predictions must be a 1D array of integer class indices, one per image"
            f"{hint}. Received: dtype={labels.dtype}, shape={labels.shape}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"predictions must be class indices >= 0. Received: a value of {labels.min()}"
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    text.write("id,label\n")
    text.writelines(f"{i},{label}\n" for i, label in enumerate(labels.tolist()))
    return atomic_write(out, lambda file: file.write(text.getvalue().encode()))


def _device(device: str | torch.device) -> torch.device:
    """The training loop's choice (``auto``: CUDA, MPS, CPU), with a clear error for a typo."""
    if isinstance(device, torch.device):
        return device
    try:
        return resolve_device(device)
    except RuntimeError:  # torch.device("gpu") and the like
        raise ValueError(
            f"device must be auto, cpu, cuda, cuda:N or mps. Received: device={device!r}"
        ) from None


def _open_image(path: Path) -> Image.Image:
    if not path.exists():
        raise FileNotFoundError(f"No such image file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, expected an image file (PNG, JPEG, ...)")
    expected = "expected PNG, JPEG, BMP, ..."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is refused
            with Image.open(path) as picture:
                picture.load()  # decode now: a truncated file fails here, not later
                return picture.copy()
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image Pillow can read ({expected})") from None
    except (
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
    ) as error:
        reason = str(error).strip() or type(error).__name__
        raise ValueError(f"{path} is not an image Pillow can read ({expected}): {reason}") from None


def _border_median(pixels: np.ndarray) -> int | tuple[int, ...]:
    """The median of the outermost rows and columns: the paper the picture is drawn on."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    median = np.median(border, axis=0)
    return int(median) if np.ndim(median) == 0 else tuple(int(v) for v in median)
