"""Readers: IDX structure checks, CIFAR-10 from a generated archive, digits, image folders."""

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import catalog, load_dataset
from cnnlab.data.readers import read_cifar10, read_file_bytes, read_idx_images, read_idx_labels

# --- IDX -------------------------------------------------------------------------------------


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)


def test_idx_images_round_trip_gzip_and_raw(tmp_path, make_idx, images):
    (tmp_path / "a.gz").write_bytes(gzip.compress(make_idx(images)))
    (tmp_path / "a").write_bytes(make_idx(images))
    for name in ("a.gz", "a"):
        read = read_idx_images(tmp_path / name, count=5, size=(4, 3))
        assert read.shape == (5, 1, 4, 3) and read.dtype == np.uint8
        np.testing.assert_array_equal(read[:, 0], images)


def test_idx_labels_are_int64(tmp_path, make_idx):
    (tmp_path / "l").write_bytes(make_idx(np.array([0, 9, 3], dtype=np.uint8)))
    labels = read_idx_labels(tmp_path / "l", count=3)
    assert labels.dtype == np.int64 and labels.tolist() == [0, 9, 3]


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda b: b[:3], {}, "shorter than its header"),
        (lambda b: b"\x00\x00\x08\x01" + b[4:], {}, r"bad IDX magic .* expected 0x00000803"),
        (lambda b: b[:10], {}, "truncated IDX header"),
        (lambda b: b[:-7], {}, r"truncated: the header promises 60 bytes .* found 53"),
        (lambda b: b + b"xx", {}, "2 unexpected bytes"),
        (lambda b: b, {"count": 6}, "expected 6 items, the header says 5"),
        (lambda b: b, {"size": (3, 4)}, "expected items of shape 3x4, the header says 4x3"),
    ],
)
def test_idx_image_structure_errors(tmp_path, make_idx, images, mutate, kwargs, message):
    path = tmp_path / "bad-images"
    path.write_bytes(mutate(make_idx(images)))
    with pytest.raises(ValueError, match=message) as error:
        read_idx_images(path, **kwargs)
    assert str(path) in str(error.value)


def test_idx_label_out_of_range(tmp_path, make_idx):
    path = tmp_path / "labels"
    path.write_bytes(make_idx(np.array([1, 2, 12, 0], dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"item 2 has label 12, expected 0..9"):
        read_idx_labels(path, num_classes=10)


def test_idx_labels_file_read_as_images_is_a_magic_error(tmp_path, make_idx):
    path = tmp_path / "labels"
    path.write_bytes(make_idx(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(ValueError, match="found 0x00000801"):
        read_idx_images(path)


def test_truncated_gzip_is_a_clear_error(tmp_path, make_idx, images):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(make_idx(images))[:-12])
    with pytest.raises(ValueError, match="gzip stream is truncated or corrupt") as error:
        read_file_bytes(path)
    assert str(path) in str(error.value)


def test_truncated_gzip_in_a_data_dir_names_the_file(tiny, tmp_path):
    folder = tiny.write(tmp_path / "d")
    victim = folder / "t10k-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-20])
    with pytest.raises(ValueError, match="truncated or corrupt") as error:
        load_dataset("tiny", data_dir=folder)
    assert str(victim) in str(error.value)


# --- CIFAR-10 --------------------------------------------------------------------------------

PER_BATCH = 4


def _cifar_archive(path, *, batches=5, per_batch=PER_BATCH, extra=None) -> None:
    """The real layout: cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}, each a
    pickled dict with bytes keys (as Python 2 pickles load with encoding="bytes")."""
    rng = np.random.default_rng(1)

    def batch(index: int) -> bytes:
        data = np.empty((per_batch, 3072), dtype=np.uint8)
        data[:, :1024], data[:, 1024:2048], data[:, 2048:] = 10, 20, 30  # R, G, B planes
        data[:, 0] = index  # the top-left red pixel tells which batch an image came from
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        return pickle.dumps({b"batch_label": b"b", b"labels": labels, b"data": data}, protocol=2)

    members = {f"data_batch_{i}": batch(i) for i in range(1, batches + 1)}
    members["test_batch"] = batch(99)
    names = [c.encode() for c in catalog.CATALOG["cifar10"].classes]
    members["batches.meta"] = pickle.dumps({b"label_names": names}, protocol=2)
    members.update(extra or {})
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))


def test_cifar10_reader_on_the_real_layout(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    _cifar_archive(path)
    train_x, train_y, test_x, _, classes = read_cifar10(
        path, train_count=5 * PER_BATCH, test_count=PER_BATCH
    )
    assert train_x.shape == (20, 3, 32, 32) and test_x.shape == (4, 3, 32, 32)
    assert train_y.dtype == np.int64 and len(train_y) == 20
    assert classes[0] == "airplane" and classes[9] == "truck"
    np.testing.assert_array_equal(train_x[:, :, 5, 5], [[10, 20, 30]] * 20)  # planes -> C
    assert train_x[:, 0, 0, 0].tolist() == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4
    assert test_x[0, 0, 0, 0] == 99


def test_cifar10_reader_wrong_count_and_missing_batch(tmp_path):
    path = tmp_path / "c.tar.gz"
    _cifar_archive(path)
    with pytest.raises(ValueError, match="expected 50,000 training images, found 20"):
        read_cifar10(path)
    _cifar_archive(path, extra={"test_batch": b"not a pickle"})
    with pytest.raises(ValueError, match="not a CIFAR-10 pickle"):
        read_cifar10(path)


def test_cifar10_reader_refuses_code_in_pickles(tmp_path):
    path = tmp_path / "c.tar.gz"
    _cifar_archive(path, extra={"test_batch": pickle.dumps(os.getcwd, protocol=2)})
    with pytest.raises(ValueError, match=r"refusing to load posix\.getcwd"):
        read_cifar10(path, train_count=20, test_count=4)


def test_cifar10_loads_through_the_catalogue(tmp_path, monkeypatch):
    path = tmp_path / "cifar-10-python.tar.gz"
    _cifar_archive(path)
    entry = catalog.CATALOG["cifar10"]
    archive = dataclasses.replace(entry.files[0], md5=hashlib.md5(path.read_bytes()).hexdigest())
    small = dataclasses.replace(entry, train_count=20, test_count=4, files=(archive,))
    monkeypatch.setitem(catalog.CATALOG, "cifar10", small)
    dataset = load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert dataset.image_shape == (3, 32, 32) and dataset.flip_ok
    assert dataset.source == f"{tmp_path} (data-dir)"
    mean, _ = dataset.mean_std()
    assert mean[1] == pytest.approx(20 / 255)


# --- digits ----------------------------------------------------------------------------------


def test_digits_loads_offline_with_a_fixed_stratified_split():
    dataset = load_dataset("digits", download=False)
    assert (len(dataset.train_labels), len(dataset.test_labels)) == (1437, 360)  # 1,797: 80/20
    assert len(dataset.classes) == 10 and dataset.image_shape == (1, 8, 8)
    assert dataset.train_images.dtype == torch.uint8
    assert int(dataset.train_images.max()) == 255  # scikit-learn's 0..16 scaled to 0..255
    # Stratified: each class's share of the 360 test images is its share of all 1,797, +-1.
    per_class = [a + b for a, b in zip(*map(dataset.class_counts, ("train", "test")), strict=True)]
    assert sum(per_class) == 1797
    for test_count, total in zip(dataset.class_counts("test"), per_class, strict=True):
        assert abs(test_count - 360 * total / 1797) <= 1
    again = load_dataset("digits")
    assert dataset.train_labels.equal(again.train_labels)
    assert "bundled" in dataset.source


# --- folder:PATH -----------------------------------------------------------------------------


def _png(path, value: int, size=(8, 6), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, value, value)
    Image.new(mode, size, colour).save(path)


def test_folder_split_by_a_seeded_fraction(tmp_path):
    for label, name in enumerate(("circle", "square")):
        for i in range(5):
            _png(tmp_path / name / f"{i}.png", 100 * label + i)
    _png(tmp_path / "square" / "odd-size.png", 7, size=(10, 10))
    _png(tmp_path / "square" / "colour.jpg", 9, mode="RGB")
    dataset = load_dataset(f"folder:{tmp_path}")
    assert dataset.classes == ("circle", "square")
    assert dataset.image_shape == (1, 6, 8)  # the most common size (W=8, H=6) and mode (L)
    assert dataset.class_counts("test") == [1, 1] and dataset.class_counts("train") == [4, 6]
    assert not dataset.flip_ok and "(data-dir)" in dataset.source
    again = load_dataset(f"folder:{tmp_path}")
    assert dataset.test_images.equal(again.test_images)


def test_folder_with_train_and_test_subfolders(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        for name in ("a", "b", "c"):
            for i in range(count):
                _png(tmp_path / split / name / f"{i}.png", i, mode="RGB")
    dataset = load_dataset(f"folder:{tmp_path}")
    assert dataset.class_counts("train") == [3, 3, 3]
    assert dataset.class_counts("test") == [2, 2, 2]
    assert dataset.image_shape == (3, 6, 8)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    _png(tmp_path / "only" / "0.png", 1)
    with pytest.raises(ValueError, match="at least 2 class sub-folders, found 1: only"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read the image .*x\.png"):
        load_dataset(f"folder:{tmp_path}")
