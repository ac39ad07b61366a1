"""``Dataset`` (uint8 tensors in memory) and ``load_dataset``: resolve, verify, read, cache.

The first load of a catalogue dataset verifies every file (published MD5, or SHA-256 of the
decoded content), reads it, and writes the arrays as one ``.npz`` into the cache, atomically,
with a SHA-256 of the arrays and a fingerprint of the files they came from (path, size, mtime).
Later loads from the same files read that ``.npz`` and check its SHA-256 instead: a fraction
of a second for Fashion-MNIST.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.catalog import (
    CATALOG,
    FOLDER_PREFIX,
    DataFile,
    DataFormat,
    DatasetEntry,
    get_entry,
)
from cnnlab.data.download import ProgressCallback
from cnnlab.data.folder import read_image_folder
from cnnlab.data.readers import (
    decode_bytes,
    read_cifar10,
    read_digits,
    read_idx_images,
    read_idx_labels,
)
from cnnlab.data.resolve import ResolvedDataset, cache_dir, resolve_dataset

CACHE_VERSION = 1
_SPLITS = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole image-classification dataset in memory: uint8 (N, C, H, W) images, int64 labels."""

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor  # uint8 (N, C, H, W), CPU
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor  # uint8 (M, C, H, W)
    test_labels: torch.Tensor  # int64 (M,)
    source: str  # where it was found, e.g. "/usr/share/datasets/fashion-mnist (system)"
    flip_ok: bool  # whether a horizontal flip is a sensible augmentation

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise ValueError(
                    f"Dataset {self.name!r}: {split}_images must be uint8 (N, C, H, W). "
                    f"Received: {images.dtype} of shape {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise ValueError(
                    f"Dataset {self.name!r}: {split}_labels must be int64 ({images.shape[0]},). "
                    f"Received: {labels.dtype} of shape {tuple(labels.shape)}"
                )
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(
                f"Dataset {self.name!r}: train and test images differ in shape: "
                f"{tuple(self.train_images.shape[1:])} vs {tuple(self.test_images.shape[1:])}"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (
            f"Dataset({self.name!r}, train={len(self.train_labels):,}, "
            f"test={len(self.test_labels):,}, image={h}x{w}x{c}, classes={len(self.classes)}, "
            f"source={self.source!r})"
        )

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation of the training images, in 0..1 units.

        Exact: computed in float64 from a 256-bin histogram of each channel's pixel values.
        """
        values = torch.arange(256, dtype=torch.float64) / 255
        means, stds = [], []
        for channel in range(self.image_shape[0]):
            pixels = self.train_images[:, channel].reshape(-1)
            counts = torch.bincount(pixels, minlength=256).to(torch.float64)
            mean = float((counts * values).sum() / counts.sum())
            var = float((counts * (values - mean) ** 2).sum() / counts.sum())
            means.append(mean)
            stds.append(var**0.5)
        return tuple(means), tuple(stds)

    def describe(self) -> dict[str, Any]:
        """Counts, shape, classes (with per-class counts) and mean/std, as plain data."""
        c, h, w = self.image_shape
        mean, std = self.mean_std()
        return {
            "name": self.name,
            "source": self.source,
            "image_shape": [c, h, w],
            "train_count": len(self.train_labels),
            "test_count": len(self.test_labels),
            "classes": list(self.classes),
            "train_class_counts": self.class_counts("train"),
            "test_class_counts": self.class_counts("test"),
            "mean": list(mean),
            "std": list(std),
            "flip_ok": self.flip_ok,
        }

    def class_counts(self, split: str = "train") -> list[int]:
        """How many images of each class ``split`` ("train" or "test") holds."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}")
        labels = getattr(self, f"{split}_labels")
        return torch.bincount(labels, minlength=len(self.classes)).tolist()

    def subset(self, *, train: Any = None, test: Any = None) -> Dataset:
        """The same dataset restricted to the ``train`` and ``test`` indices (None: all).

        Indices are anything ``torch.as_tensor`` takes (a list, a NumPy array, a tensor) of
        integers, or a boolean mask of the split's length. The classes stay as they are.
        """
        parts = {}
        for split, index in (("train", train), ("test", test)):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if index is not None:
                chosen = _split_index(split, index, labels.shape[0])
                images, labels = images[chosen], labels[chosen]
            parts[f"{split}_images"], parts[f"{split}_labels"] = images, labels
        counts = f"{len(parts['train_labels'])} train, {len(parts['test_labels'])} test"
        return dataclasses.replace(self, **parts, source=f"{self.source}; subset: {counts}")

    @classmethod
    def from_arrays(
        cls,
        train: tuple[Any, Any],
        test: tuple[Any, Any],
        *,
        name: str = "arrays",
        classes: Any = None,
        flip_ok: bool = False,
    ) -> Dataset:
        """A dataset from in-memory images and labels, in Keras's ``load_data()`` layout.

        ``train`` and ``test`` are ``(images, labels)`` pairs of NumPy arrays or tensors.
        Images are (N, H, W) (one channel), (N, H, W, C) with C in 1, 3 or 4 (Keras's
        channels-last; taken so when the second axis is not 1 or 3) or (N, C, H, W);
        uint8 (0..255), or floats in [0, 1], which are rounded to the nearest of 256
        levels (how every cnnlab dataset is held).
        Labels are integers 0..K-1; ``classes`` names them (default "0".."K-1").
        """
        pairs = {}
        for split, pair in (("train", train), ("test", test)):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(
                    f"{split} must be an (images, labels) pair. Received: {split}={_brief(pair)}"
                )
            images = _images_uint8(f"{split} images", pair[0])
            labels = _labels_int64(f"{split} labels", pair[1], images.shape[0])
            pairs[split] = images, labels
        top = max(int(pairs[s][1].max()) for s in pairs if pairs[s][1].numel()) + 1
        if classes is None:
            classes = tuple(str(k) for k in range(top))
        classes = tuple(str(c) for c in classes)
        if len(classes) < top:
            raise ValueError(
                f"classes names {len(classes)} classes but the labels go up to {top - 1}. "
                f"Received: classes={list(classes)!r}"
            )
        return cls(
            name=name,
            classes=classes,
            train_images=pairs["train"][0],
            train_labels=pairs["train"][1],
            test_images=pairs["test"][0],
            test_labels=pairs["test"][1],
            source="in-memory arrays",
            flip_ok=flip_ok,
        )


def _brief(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else repr(value)


def _split_index(split: str, index: Any, count: int) -> torch.Tensor:
    chosen = torch.as_tensor(index)
    if chosen.dtype == torch.bool:
        if chosen.shape != (count,):
            raise ValueError(
                f"{split} mask must have one entry per {split} image ({count}). "
                f"Received: {split}={_brief(chosen)}"
            )
        return chosen.nonzero().flatten()
    if chosen.dim() != 1 or chosen.is_floating_point() or chosen.is_complex():
        raise ValueError(
            f"{split} must be a 1-D sequence of integer indices or a boolean mask. "
            f"Received: {split}={_brief(chosen)} of dtype {chosen.dtype}"
        )
    chosen = chosen.long()
    if chosen.numel() == 0:
        raise ValueError(f"{split} selects no images. Received: {split}=[]")
    if int(chosen.min()) < -count or int(chosen.max()) >= count:
        raise ValueError(
            f"{split} indices must be in [0, {count}) (the {split} split's size). Received: "
            f"indices from {int(chosen.min())} to {int(chosen.max())}"
        )
    return chosen


def _images_uint8(what: str, images: Any) -> torch.Tensor:
    """(N, C, H, W) uint8 from (N, H, W), (N, H, W, C) or (N, C, H, W); uint8 or [0, 1] floats."""
    try:
        tensor = torch.as_tensor(np.asarray(images))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what} must be an array of images. Received: {_brief(images)} ({error})"
        ) from None
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(1)
    elif tensor.dim() == 4 and tensor.shape[-1] in (1, 3, 4) and tensor.shape[1] not in (1, 3):
        tensor = tensor.permute(0, 3, 1, 2)  # Keras's (N, H, W, C)
    elif tensor.dim() != 4:
        raise ValueError(
            f"{what} must be (N, H, W), (N, H, W, C) or (N, C, H, W). Received: {_brief(tensor)}"
        )
    if tensor.shape[0] == 0:
        raise ValueError(f"{what} must hold at least one image. Received: {_brief(tensor)}")
    if tensor.dtype == torch.uint8:
        return tensor.contiguous()
    if tensor.is_floating_point():
        low, high = float(tensor.min()), float(tensor.max())
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0.0 and high <= 1.0):
            raise ValueError(
                f"{what}: float images must lie in [0, 1] (or pass uint8 0..255). "
                f"Received: values from {low:g} to {high:g}"
            )
        return (tensor.double() * 255).round().to(torch.uint8).contiguous()
    if tensor.dtype in (torch.int16, torch.int32, torch.int64, torch.int8):
        low, high = int(tensor.min()), int(tensor.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{what}: integer images must lie in 0..255. Received: values from {low} to {high}"
            )
        return tensor.to(torch.uint8).contiguous()
    raise ValueError(f"{what} must be uint8 or float images. Received: dtype {tensor.dtype}")


def _labels_int64(what: str, labels: Any, count: int) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(labels))
    if tensor.dim() == 2 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]  # Keras's CIFAR-10 labels are (N, 1)
    if tensor.shape != (count,) or tensor.is_floating_point() or tensor.dtype == torch.bool:
        raise ValueError(
            f"{what} must be {count} integer class ids (one per image). "
            f"Received: {_brief(tensor)} of dtype {tensor.dtype}"
        )
    tensor = tensor.long()
    if tensor.numel() and int(tensor.min()) < 0:
        raise ValueError(f"{what} must be class ids >= 0. Received: minimum {int(tensor.min())}")
    return tensor


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> Dataset:
    """Resolve, verify and read dataset ``name`` (a catalogue name or ``folder:PATH``).

    ``data_dir``, ``download`` and ``progress`` apply to the downloadable datasets; ``digits``
    is bundled with scikit-learn and ``folder:PATH`` names its own folder.
    """
    if name.startswith(FOLDER_PREFIX):
        resolved = resolve_dataset(name)
        train_x, train_y, test_x, test_y, classes = read_image_folder(resolved.path)
        arrays = dict(zip(_SPLITS, (train_x, train_y, test_x, test_y), strict=True))
        return _dataset(name, classes, arrays, str(resolved), flip_ok=False)
    entry = get_entry(name)
    resolved = resolve_dataset(name, data_dir=data_dir, download=download, progress=progress)
    for note in resolved.skipped:  # a corrupt copy did not hide a good one: say which is used
        warnings.warn(f"{note}; using {resolved}", stacklevel=2)
    if entry.format is DataFormat.SKLEARN_DIGITS:
        arrays = dict(zip(_SPLITS, read_digits(), strict=True))
        source = "scikit-learn's load_digits (bundled)"
        return _dataset(name, entry.classes, arrays, source, entry.flip_ok)
    arrays = _load_parsed_cache(entry, resolved)
    if arrays is None:
        arrays = _read_files(entry, resolved)
        _write_parsed_cache(entry, resolved, arrays)
    return _dataset(name, entry.classes, arrays, str(resolved), entry.flip_ok)


def _dataset(
    name: str, classes: tuple[str, ...], arrays: dict[str, np.ndarray], source: str, flip_ok: bool
) -> Dataset:
    tensors = {key: torch.from_numpy(np.ascontiguousarray(arrays[key])) for key in _SPLITS}
    for key in ("train_labels", "test_labels"):
        tensors[key] = tensors[key].to(torch.int64)
    return Dataset(name, tuple(classes), source=source, flip_ok=flip_ok, **tensors)


def verify_file(
    path: Path, data_file: DataFile, raw: bytes | None = None, decoded: bytes | None = None
) -> str:
    """Check ``path`` against the catalogue: "md5" or "sha256" (the check that passed), or
    "unverified" when the MD5 differs and no decoded SHA-256 is recorded (a recompressed or
    uncompressed copy: only its structure can be checked). A mismatch is a ``ValueError``, and
    so is another catalogue dataset's file (the IDX datasets share file names)."""
    raw = path.read_bytes() if raw is None else raw
    found_md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if data_file.md5 and found_md5 == data_file.md5:
        return "md5"
    decoded = decode_bytes(raw, str(path)) if decoded is None else decoded
    found_sha = hashlib.sha256(decoded).hexdigest()
    if data_file.sha256 and found_sha == data_file.sha256:
        return "sha256"
    owner = _owner(found_md5, found_sha)
    if owner:
        raise ValueError(f"{path} is {owner}, not the {data_file.name} of this dataset")
    if data_file.sha256 is None:
        return "unverified"
    raise ValueError(
        f"{path} is not the published {data_file.name}: expected MD5 {data_file.md5} "
        f"(of the .gz), got {found_md5}; expected SHA-256 {data_file.sha256} of the decoded "
        f"content, got {found_sha}. Delete it and fetch it again"
    )


def _owner(md5: str, sha256: str) -> str:
    """ "fashion-mnist's train-images-idx3-ubyte.gz" if a catalogue file has these checksums."""
    for entry in CATALOG.values():
        for data_file in entry.files:
            if md5 == data_file.md5 or sha256 == data_file.sha256:
                return f"{entry.name}'s {data_file.name}"
    return ""


def _read_files(entry: DatasetEntry, resolved: ResolvedDataset) -> dict[str, np.ndarray]:
    """Verify each file, then read it (each file is read from disk once)."""
    if entry.format is DataFormat.CIFAR10_PYTHON:
        path = resolved.files[0]
        _verify_or_warn(path, entry.files[0], path.read_bytes(), None, entry.name)
        images_labels = read_cifar10(
            path, train_count=entry.train_count, test_count=entry.test_count
        )[:4]
        return dict(zip(_SPLITS, images_labels, strict=True))
    _, height, width = entry.shape
    counts = {"train": entry.train_count, "test": entry.test_count}
    arrays = {}
    for data_file, path in zip(entry.files, resolved.files, strict=True):
        raw = path.read_bytes()
        content = decode_bytes(raw, str(path))
        _verify_or_warn(path, data_file, raw, content, entry.name)
        count = counts[data_file.role.split("_")[0]]
        if data_file.role.endswith("images"):
            arrays[data_file.role] = read_idx_images(
                path, count=count, size=(height, width), data=content
            )
        else:
            arrays[data_file.role] = read_idx_labels(
                path, count=count, num_classes=len(entry.classes), data=content
            )
    return arrays


def _verify_or_warn(
    path: Path, data_file: DataFile, raw: bytes, decoded: bytes | None, name: str
) -> None:
    if verify_file(path, data_file, raw, decoded) == "unverified":
        warnings.warn(
            f"{path} cannot be verified: it is not the published {data_file.name} (MD5) and "
            f"the catalogue records no SHA-256 of the decoded content for {name}, so only its "
            "structure is checked",
            stacklevel=4,
        )


def _cache_file(entry: DatasetEntry) -> Path:
    return cache_dir(entry.name) / f"{entry.name}.arrays.npz"


def _fingerprint(entry: DatasetEntry, resolved: ResolvedDataset) -> dict[str, Any]:
    """What the cached arrays were read from: the catalogue entry and each file's identity."""
    files = []
    for path in resolved.files:
        stat = path.stat()
        files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return {
        "version": CACHE_VERSION,
        "entry": [entry.name, entry.format.value, list(entry.shape), entry.train_count,
                  entry.test_count, [[f.name, f.md5, f.sha256] for f in entry.files]],
        "files": files,
    }  # fmt: skip


def _arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in _SPLITS:
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _load_parsed_cache(
    entry: DatasetEntry, resolved: ResolvedDataset
) -> dict[str, np.ndarray] | None:
    """The cached arrays if they come from these very files and pass their checksum."""
    path = _cache_file(entry)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta.get("fingerprint") != _fingerprint(entry, resolved):
                return None
            arrays = {key: stored[key] for key in _SPLITS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # unreadable: read the files again and rewrite it
    return arrays if _arrays_sha256(arrays) == meta.get("sha256") else None


def _write_parsed_cache(
    entry: DatasetEntry, resolved: ResolvedDataset, arrays: dict[str, np.ndarray]
) -> None:
    """Write the arrays atomically (temp file in the same folder, then ``os.replace``)."""
    path = _cache_file(entry)
    meta = {"fingerprint": _fingerprint(entry, resolved), "sha256": _arrays_sha256(arrays)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        warnings.warn(f"cannot cache {entry.name} in {path.parent} ({error})", stacklevel=3)
        return
    try:
        os.chmod(temp, 0o644)  # mkstemp makes it 0600; a cache is not a secret
        with os.fdopen(fd, "wb") as file:
            np.savez(file, meta=np.array(json.dumps(meta)), **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as error:
        warnings.warn(f"cannot cache {entry.name} at {path} ({error})", stacklevel=3)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
