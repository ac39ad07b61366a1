"""The dataset catalogue: what each named dataset is, where it is published, how to check it.

Every file carries two kinds of checksum. ``md5`` is the one the publisher lists for the
compressed file as downloaded. ``sha256`` is of the *decoded* content (the file after gunzip),
computed here from a verified copy; it is what lets a recompressed copy validate (Debian's
``dataset-fashion-mnist`` recompresses the ``.gz`` files, so their MD5s differ while the bytes
inside are the same). A file is accepted if either checksum matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cnnlab.names import closest_names as find_closest

FOLDER_PREFIX = "folder:"


class DataFormat(str, Enum):
    IDX = "idx"  # LeCun's IDX: four files, images and labels for train and test
    CIFAR10_PYTHON = "cifar10-python"  # one tar.gz of pickled batches
    SKLEARN_DIGITS = "sklearn-digits"  # bundled with scikit-learn, nothing to fetch
    IMAGE_FOLDER = "image-folder"  # folder:PATH, one sub-folder per class


IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class DataFile:
    """One published file and its checksums (either may be None where unknown)."""

    name: str
    role: str  # one of IDX_ROLES, or "archive"
    md5: str | None = None  # published MD5 of the file as downloaded (compressed)
    sha256: str | None = None  # SHA-256 of the decoded (gunzipped) content


@dataclass(frozen=True)
class DatasetEntry:
    """Everything cnnlab knows about a named dataset before touching the disk."""

    name: str
    format: DataFormat
    classes: tuple[str, ...]
    shape: tuple[int, int, int]  # (C, H, W) of one image
    train_count: int
    test_count: int
    flip_ok: bool  # a horizontal flip keeps the class (clothes, objects), unlike digits or script
    files: tuple[DataFile, ...] = ()
    mirrors: tuple[str, ...] = ()  # base URLs, tried in order
    description: str = ""
    homepage: str = ""
    debian_package: str | None = None  # installs the files under /usr/share/datasets/<name>

    def __repr__(self) -> str:
        c, h, w = self.shape
        return (
            f"DatasetEntry({self.name!r}, {self.format.value}, {h}x{w}x{c}, "
            f"train={self.train_count:,}, test={self.test_count:,}, classes={len(self.classes)})"
        )

    def file(self, role: str) -> DataFile:
        for data_file in self.files:
            if data_file.role == role:
                return data_file
        raise KeyError(f"{self.name}: no file with role {role!r}")


def _idx_files(
    md5s: tuple[str, str, str, str], sha256s: tuple[str | None, ...] = ()
) -> tuple[DataFile, ...]:
    """The four IDX files under their published names, in IDX_ROLES order."""
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    sha256s = sha256s or (None,) * 4
    return tuple(
        DataFile(name, role, md5, sha)
        for name, role, md5, sha in zip(names, IDX_ROLES, md5s, sha256s, strict=True)
    )


CATALOG: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            name="mnist",
            format=DataFormat.IDX,
            classes=tuple(str(d) for d in range(10)),
            shape=(1, 28, 28),
            train_count=60_000,
            test_count=10_000,
            flip_ok=False,
            # MD5s as published with torchvision's MNIST (the same files on both mirrors).
            files=_idx_files(
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                )
            ),
            mirrors=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ),
            description="handwritten digits 0-9 (LeCun, Cortes and Burges)",
            homepage="http://yann.lecun.com/exdb/mnist/",
        ),
        DatasetEntry(
            name="fashion-mnist",
            format=DataFormat.IDX,
            classes=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            shape=(1, 28, 28),
            train_count=60_000,
            test_count=10_000,
            flip_ok=True,
            # MD5s from the Fashion-MNIST README; decoded SHA-256s computed from Debian's
            # dataset-fashion-mnist 0.0~git20200523.55506a9-1 (recompressed, same content).
            files=_idx_files(
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                (
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
            ),
            mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            description="Zalando article images, a drop-in replacement for MNIST",
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            debian_package="dataset-fashion-mnist",
        ),
        DatasetEntry(
            name="kmnist",
            format=DataFormat.IDX,
            # The ten hiragana of Kuzushiji-MNIST, romanised: お き す つ な は ま や れ を
            classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
            shape=(1, 28, 28),
            train_count=60_000,
            test_count=10_000,
            flip_ok=False,
            files=_idx_files(
                (
                    "bdb82020997e1d708af4cf47b453dcf7",
                    "e144d726b3acfaa3e44228e80efcd344",
                    "5c965bf0a639b31b8f53240b1b52f4d7",
                    "7320c461ea6c1c855c0b718fb2a4b134",
                )
            ),
            mirrors=(
                "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
                "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            ),
            description="Kuzushiji-MNIST: cursive Japanese hiragana (ROIS-DS CODH)",
            homepage="https://github.com/rois-codh/kmnist",
        ),
        DatasetEntry(
            name="cifar10",
            format=DataFormat.CIFAR10_PYTHON,
            classes=(
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
            shape=(3, 32, 32),
            train_count=50_000,
            test_count=10_000,
            flip_ok=True,
            files=(
                DataFile("cifar-10-python.tar.gz", "archive", "c58f30108f718f92721af3b95e74349a"),
            ),
            mirrors=("https://www.cs.toronto.edu/~kriz/",),
            description="32x32 colour photographs in 10 classes (Krizhevsky, 2009)",
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        ),
        DatasetEntry(
            name="digits",
            format=DataFormat.SKLEARN_DIGITS,
            classes=tuple(str(d) for d in range(10)),
            shape=(1, 8, 8),
            train_count=1437,  # 80/20 stratified split of 1,797 (see readers.read_digits)
            test_count=360,
            flip_ok=False,
            description="8x8 handwritten digits bundled with scikit-learn (offline fallback)",
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        ),
    )
}


def list_datasets() -> list[str]:
    """The catalogue's dataset names, sorted (``folder:PATH`` is accepted besides these)."""
    return sorted(CATALOG)


def get_entry(name: str) -> DatasetEntry:
    """The catalogue entry for ``name``; an unknown name lists the closest known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        close = closest_names(name)
        hint = f"Did you mean: {', '.join(close)}? " if close else ""
        raise ValueError(
            f"Unknown dataset: name={name!r}. {hint}Known datasets: "
            f"{', '.join(list_datasets())}, or {FOLDER_PREFIX}PATH for a folder of images"
        ) from None


def closest_names(name: str, limit: int = 3) -> list[str]:
    """Catalogue names nearest to ``name`` (see :func:`cnnlab.names.closest_names`)."""
    return find_closest(name, CATALOG, limit)
