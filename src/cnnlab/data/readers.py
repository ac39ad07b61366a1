"""Readers from published file formats to NumPy arrays: IDX, CIFAR-10 (python), digits.

Each reader checks the structure it expects (magic numbers, dimensions, counts, label range,
truncation) and raises a ``ValueError`` naming the file and what is wrong, so a damaged file is
never turned into silently wrong numbers. Images come out as uint8 (N, C, H, W), labels as int64.
"""

from __future__ import annotations

import codecs
import gzip
import io
import pickle
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions


def read_file_bytes(path: str | Path) -> bytes:
    """The content of ``path``, gunzipped when it is gzip (detected by its magic, not its name)."""
    return decode_bytes(Path(path).read_bytes(), str(path))


def decode_bytes(raw: bytes, source: str) -> bytes:
    """``raw`` gunzipped if it starts with the gzip magic, else unchanged; ``source`` names
    the file in the error when the gzip stream is truncated or corrupt."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(
            f"{source}: the gzip stream is truncated or corrupt ({error}). "
            "Delete the file and fetch it again"
        ) from None


def parse_idx(
    data: bytes,
    *,
    source: str,
    magic: int,
    count: int | None = None,
    item_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Decode IDX ``data`` (already gunzipped) into a uint8 array, checking its structure.

    ``magic`` is the expected magic number; ``count`` and ``item_shape`` (e.g. (28, 28)), when
    given, are the expected first dimension and the rest. ``source`` names the file in errors.
    """
    if len(data) < 4:
        raise ValueError(f"{source}: not an IDX file: {len(data)} bytes, shorter than its header")
    (found_magic,) = struct.unpack(">I", data[:4])
    if found_magic != magic:
        raise ValueError(
            f"{source}: bad IDX magic number: expected 0x{magic:08x} "
            f"({_describe_magic(magic)}), found 0x{found_magic:08x}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{source}: truncated IDX header: expected {header} bytes, found {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if count is not None and dims[0] != count:
        raise ValueError(
            f"{source}: expected {count:,} items, the header says {dims[0]:,} "
            f"(dimensions {'x'.join(map(str, dims))})"
        )
    if item_shape is not None and tuple(dims[1:]) != tuple(item_shape):
        raise ValueError(
            f"{source}: expected items of shape {'x'.join(map(str, item_shape))}, "
            f"the header says {'x'.join(map(str, dims[1:]))}"
        )
    expected = int(np.prod(dims, dtype=np.int64))
    found = len(data) - header
    if found < expected:
        raise ValueError(
            f"{source}: truncated: the header promises {expected:,} bytes of data "
            f"({'x'.join(map(str, dims))}), found {found:,}"
        )
    if found > expected:
        raise ValueError(
            f"{source}: {found - expected:,} unexpected bytes after the "
            f"{'x'.join(map(str, dims))} data"
        )
    # A copy, so that the array owns writable memory (torch.from_numpy warns on read-only).
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _describe_magic(magic: int) -> str:
    return f"uint8, {magic & 0xFF} dimension{'s' if magic & 0xFF != 1 else ''}"


def read_idx_images(
    path: str | Path,
    *,
    count: int | None = None,
    size: tuple[int, int] | None = None,
    data: bytes | None = None,
) -> np.ndarray:
    """An IDX image file (gzip or raw) as uint8 (N, 1, H, W); ``data`` skips reading it again."""
    data = read_file_bytes(path) if data is None else data
    images = parse_idx(data, source=str(path), magic=IDX_IMAGES_MAGIC, count=count, item_shape=size)
    return images[:, None, :, :]


def read_idx_labels(
    path: str | Path,
    *,
    count: int | None = None,
    num_classes: int = 10,
    data: bytes | None = None,
) -> np.ndarray:
    """An IDX label file (gzip or raw) as int64 (N,), each label in 0..num_classes-1."""
    data = read_file_bytes(path) if data is None else data
    labels = parse_idx(data, source=str(path), magic=IDX_LABELS_MAGIC, count=count)
    _check_labels(labels, num_classes, str(path))
    return labels.astype(np.int64)


def _check_labels(labels: np.ndarray, num_classes: int, source: str) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise ValueError(
            f"{source}: label out of range: item {bad:,} has label {int(labels[bad])}, "
            f"expected 0..{num_classes - 1}"
        )


class _ArrayUnpickler(pickle.Unpickler):
    """Loads plain data and NumPy arrays only: a pickle can run code, an archive should not."""

    _allowed: dict[tuple[str, str], Any] = {  # noqa: RUF012
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles from Python 3 hold bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return np.ndarray.__reduce__(np.zeros(1))[0]  # NumPy's own array reconstructor
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset archive")


def _get(batch: dict, key: str) -> Any:
    """``batch[key]``; CIFAR's pickles come from Python 2, so keys load as bytes."""
    if key.encode() in batch:
        return batch[key.encode()]
    return batch[key]


def read_cifar10(
    path: str | Path, *, train_count: int = 50_000, test_count: int = 10_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """The CIFAR-10 python archive (``cifar-10-python.tar.gz``), read in memory without
    extracting: (train images, train labels, test images, test labels, class names)."""
    path = Path(path)
    batches: dict[str, dict] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                stem = member.name.rsplit("/", 1)[-1]
                if member.isfile() and (stem.startswith("data_batch_") or stem in _CIFAR_OTHER):
                    file = archive.extractfile(member)
                    assert file is not None  # a regular file always has content
                    batches[stem] = _ArrayUnpickler(
                        io.BytesIO(file.read()), encoding="bytes"
                    ).load()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a readable tar.gz archive ({error})") from None
    except (pickle.UnpicklingError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: a batch inside is not a CIFAR-10 pickle ({error})") from None

    train_names = sorted((n for n in batches if n.startswith("data_batch_")), key=_batch_number)
    missing = [n for n in ("test_batch", "batches.meta") if n not in batches]
    if not train_names or missing:
        raise ValueError(
            f"{path}: not the CIFAR-10 python archive: missing "
            f"{', '.join(missing + ([] if train_names else ['data_batch_1..5']))}"
        )
    classes = tuple(
        n.decode() if isinstance(n, bytes) else str(n)
        for n in _get(batches["batches.meta"], "label_names")
    )
    train = [_cifar_batch(batches[n], path, n, len(classes)) for n in train_names]
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    test_images, test_labels = _cifar_batch(batches["test_batch"], path, "test_batch", len(classes))
    for split, found, expected in (
        ("training", len(train_labels), train_count),
        ("test", len(test_labels), test_count),
    ):
        if found != expected:
            raise ValueError(f"{path}: expected {expected:,} {split} images, found {found:,}")
    return train_images, train_labels, test_images, test_labels, classes


_CIFAR_OTHER = ("test_batch", "batches.meta")


def _batch_number(name: str) -> int:
    return int(name.rsplit("_", 1)[-1])


def _cifar_batch(
    batch: dict, path: Path, name: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    source = f"{path}:{name}"
    try:
        data = np.asarray(_get(batch, "data"), dtype=np.uint8)
        labels = np.asarray(_get(batch, "labels"), dtype=np.int64)
    except KeyError as error:
        raise ValueError(f"{source}: missing the {error} entry") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(
            f"{source}: expected data of shape (N, 3072) and N labels, "
            f"found data {data.shape} and {len(labels)} labels"
        )
    _check_labels(labels, num_classes, source)
    return data.reshape(-1, 3, 32, 32), labels  # rows are R, G, B planes: already (C, H, W)


def read_digits(
    *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (values 0..16 scaled to 0..255), split stratified
    with a fixed seed: (train images, train labels, test images, test labels)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return train_x, train_y, test_x, test_y
