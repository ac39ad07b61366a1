"""The real Fashion-MNIST from Debian's dataset-fashion-mnist (recompressed .gz files)."""

from pathlib import Path

import pytest
import torch

from cnnlab.data import cache_dir, get_entry, load_dataset, resolve, verify_file

SYSTEM = Path("/usr/share/datasets")
pytestmark = pytest.mark.requires(
    not (SYSTEM / "fashion-mnist").is_dir(),
    "Debian's dataset-fashion-mnist in /usr/share/datasets/fashion-mnist",
)


@pytest.fixture
def real_system(monkeypatch):
    monkeypatch.setattr(resolve, "SYSTEM_DIRS", (SYSTEM,))


def test_fashion_mnist_from_the_system_folder(real_system):
    data = load_dataset("fashion-mnist", download=False)
    assert data.source == "/usr/share/datasets/fashion-mnist (system)"
    assert data.train_images.shape == (60_000, 1, 28, 28)
    assert data.test_images.shape == (10_000, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert data.train_labels.min() == 0 and data.train_labels.max() == 9
    assert data.class_counts("train") == [6_000] * 10
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert data.flip_ok
    (mean,), (std,) = data.mean_std()
    assert mean == pytest.approx(0.2860, abs=5e-5)
    assert std == pytest.approx(0.3530, abs=5e-5)
    assert (cache_dir("fashion-mnist") / "fashion-mnist.arrays.npz").is_file()
    again = load_dataset("fashion-mnist", download=False)  # from the parsed cache
    assert again.train_images.equal(data.train_images) and again.source == data.source


def test_debian_copy_passes_by_decoded_sha256():
    """Debian recompressed the .gz files: the MD5s differ, the decoded content is identical."""
    for data_file in get_entry("fashion-mnist").files:
        assert verify_file(SYSTEM / "fashion-mnist" / data_file.name, data_file) == "sha256"


def test_fashion_mnist_files_given_as_mnist_are_refused():
    with pytest.raises(ValueError, match=r"is fashion-mnist's train-images-idx3-ubyte\.gz"):
        load_dataset("mnist", data_dir=SYSTEM / "fashion-mnist")
