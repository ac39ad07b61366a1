"""``folder:PATH`` datasets: your own images, one sub-folder per class.

    PATH/cat/001.png  PATH/dog/002.jpg ...            split by a seeded, stratified fraction
    PATH/train/cat/... PATH/test/cat/...              split as given

Images are made alike: the most common size and the most common kind (grayscale or colour)
among them win, and the others are converted to it (bilinear resize; colour to gray by
luminance, gray to colour by repetition). What cannot be read as an 8-bit image is an error
naming the file.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY_MODES = ("1", "L", "LA")
_COLOUR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr")


def read_image_folder(
    root: str | Path, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(train images, train labels, test images, test labels, class names) from ``root``.

    Without ``train/`` and ``test/`` sub-folders, each class is split on its own: a seeded
    ``test_fraction`` of its images (at least one when it has two or more) goes to the test set.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"folder dataset: PATH={str(root)!r} is not a folder. Expected a folder with one "
            "sub-folder of PNG/JPEG images per class"
        )
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1. Received: {test_fraction!r}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = _class_names(root / "train")
        train_files = _image_files(root / "train", classes, require_all=True)
        unknown = sorted(set(_class_names(root / "test", minimum=0)) - set(classes))
        if unknown:
            raise ValueError(
                f"folder dataset {root}: test/ has classes that train/ lacks: {', '.join(unknown)}"
            )
        test_files = _image_files(root / "test", classes, require_all=False)
    else:
        classes = _class_names(root)
        train_files, test_files = _split(
            _image_files(root, classes, require_all=True), test_fraction, seed
        )
    images = _load_alike([path for path, _ in train_files + test_files])
    labels = np.array([label for _, label in train_files + test_files], dtype=np.int64)
    n = len(train_files)
    return images[:n], labels[:n], images[n:], labels[n:], classes


def _class_names(folder: Path, minimum: int = 2) -> tuple[str, ...]:
    names = tuple(
        sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    )
    if len(names) < minimum:
        raise ValueError(
            f"folder dataset {folder}: expected at least {minimum} class sub-folders, "
            f"found {len(names)}{': ' + ', '.join(names) if names else ''}"
        )
    return names


def _image_files(
    folder: Path, classes: tuple[str, ...], *, require_all: bool
) -> list[tuple[Path, int]]:
    files = []
    for label, name in enumerate(classes):
        found = (
            sorted(
                p
                for p in (folder / name).iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if (folder / name).is_dir()
            else []
        )
        if not found and require_all:
            raise ValueError(
                f"folder dataset: class folder {folder / name} has no images "
                f"(expected files ending in {', '.join(IMAGE_SUFFIXES)})"
            )
        files += [(path, label) for path in found]
    return files


def _split(
    files: list[tuple[Path, int]], test_fraction: float, seed: int
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Stratified: each class is shuffled by the seeded generator and cut on its own."""
    rng = np.random.default_rng(seed)
    train: list[tuple[Path, int]] = []
    test: list[tuple[Path, int]] = []
    for label in sorted({label for _, label in files}):
        members = [item for item in files if item[1] == label]
        order = rng.permutation(len(members))
        n_test = round(len(members) * test_fraction)
        n_test = min(max(n_test, 1), len(members) - 1) if len(members) >= 2 else 0
        test += [members[i] for i in sorted(order[:n_test])]
        train += [members[i] for i in sorted(order[n_test:])]
    return train, test


def _load_alike(paths: list[Path]) -> np.ndarray:
    """uint8 (N, C, H, W): every image converted to the most common size and kind."""
    loaded = []
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is refused
                with Image.open(path) as image:
                    image.load()
        except (
            OSError,
            UnidentifiedImageError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as error:
            raise ValueError(f"folder dataset: cannot read the image {path} ({error})") from None
        if image.mode not in _GRAY_MODES + _COLOUR_MODES:
            raise ValueError(
                f"folder dataset: {path} has pixel mode {image.mode!r}; expected 8-bit "
                "grayscale or colour (16-bit and float images would lose precision silently)"
            )
        loaded.append(image)
    if not loaded:
        raise ValueError("folder dataset: no images found")
    size = Counter(image.size for image in loaded).most_common(1)[0][0]
    gray = Counter(image.mode in _GRAY_MODES for image in loaded).most_common(1)[0][0]
    mode = "L" if gray else "RGB"
    arrays = []
    for image in loaded:
        converted = image.convert(mode)
        if converted.size != size:
            converted = converted.resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(converted, dtype=np.uint8)
        arrays.append(pixels[None] if gray else pixels.transpose(2, 0, 1))  # (C, H, W)
    return np.stack(arrays)
