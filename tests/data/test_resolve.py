"""Resolution order, the error messages, verification, and the parsed-array cache."""

import dataclasses
import gzip
import os
import warnings

import numpy as np
import pytest

from cnnlab.data import (
    DataFormat,
    cache_dir,
    catalog,
    dataset,
    get_entry,
    load_dataset,
    locate_datasets,
    resolve_dataset,
)


def test_data_dir_beats_cache_beats_system(tiny, tmp_path, system_dir):
    data_dir = tiny.write(tmp_path / "mine")
    tiny.write(cache_dir("tiny"))
    tiny.write(system_dir / "tiny")
    assert resolve_dataset("tiny", data_dir=data_dir, download=False).source == "data-dir"
    resolved = resolve_dataset("tiny", download=False)
    assert (resolved.source, resolved.path) == ("cache", cache_dir("tiny"))
    for path in cache_dir("tiny").iterdir():
        path.unlink()
    resolved = resolve_dataset("tiny", download=False)
    assert (resolved.source, resolved.path) == ("system", system_dir / "tiny")
    assert str(resolved) == f"{system_dir / 'tiny'} (system)"


def test_data_dir_may_hold_a_folder_named_after_the_dataset(tiny, tmp_path):
    tiny.write(tmp_path / "datasets" / "tiny")
    resolved = resolve_dataset("tiny", data_dir=tmp_path / "datasets")
    assert resolved.path == tmp_path / "datasets" / "tiny"


def test_system_folder_with_uncompressed_files(tiny, system_dir):
    tiny.write(system_dir / "tiny", compressed=False)
    resolved = resolve_dataset("tiny", download=False)
    assert resolved.files[0].name == "train-images-idx3-ubyte"
    data = load_dataset("tiny", download=False)  # decoded SHA-256s match: no warning
    np.testing.assert_array_equal(data.train_images[:, 0].numpy(), tiny.train_images)


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("fasion-mnist", "fashion-mnist"), ("MNIST", "mnist"), ("cifar", "cifar10")],
)
def test_unknown_name_suggests_the_closest(typo, suggestion):
    with pytest.raises(ValueError, match=f"Did you mean: {suggestion}") as error:
        resolve_dataset(typo)
    assert f"name={typo!r}" in str(error.value) and "folder:PATH" in str(error.value)


def test_data_dir_missing_files_are_listed(tiny, tmp_path):
    folder = tiny.write(tmp_path / "partial")
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as error:
        resolve_dataset("tiny", data_dir=folder)
    message = str(error.value)
    assert "lacks 2 of the 4 tiny files" in message
    assert "missing train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz" in message
    assert "train-images" not in message.split("missing")[1]
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        resolve_dataset("tiny", data_dir=tmp_path / "absent")


def test_nothing_found_names_the_three_ways(tiny):
    with pytest.raises(FileNotFoundError) as error:
        resolve_dataset("tiny", download=False)
    message = str(error.value)
    assert "downloading is turned off" in message
    assert "(1) pass --data-dir DIR" in message
    assert "(2) run `cnnlab data fetch tiny` on a machine with internet access" in message
    assert f"(3) copy those files into {cache_dir('tiny')}" in message
    assert "\n" not in message


def test_fashion_mnist_third_way_is_the_debian_package():
    with pytest.raises(FileNotFoundError) as error:
        resolve_dataset("fashion-mnist", download=False)
    assert "(3) install Debian's dataset-fashion-mnist package" in str(error.value)


def test_no_mirror_reachable_is_the_three_ways_too(tiny, monkeypatch):
    entry = dataclasses.replace(catalog.CATALOG["tiny"], mirrors=("http://127.0.0.1:9/",))
    monkeypatch.setitem(catalog.CATALOG, "tiny", entry)
    with pytest.raises(FileNotFoundError, match=r"cannot connect.*Three ways to get it"):
        resolve_dataset("tiny")


def test_locate_datasets_reports_found_and_missing(tiny, tmp_path):
    tiny.write(tmp_path / "d" / "tiny")
    rows = {row.name: row for row in locate_datasets(tmp_path / "d")}
    assert rows["tiny"].found and rows["tiny"].source == "data-dir"
    assert rows["digits"].source == "bundled"
    assert not rows["mnist"].found and "cnnlab data fetch mnist" in rows["mnist"].how_to_get


def test_catalogue_entries_are_consistent():
    for name in catalog.list_datasets():
        entry = get_entry(name)
        assert len(entry.classes) == 10
        if entry.format is DataFormat.IDX:
            assert [f.role for f in entry.files] == list(catalog.IDX_ROLES)
            assert all(len(f.md5) == 32 for f in entry.files) and entry.mirrors
    assert get_entry("fashion-mnist").flip_ok and get_entry("cifar10").flip_ok
    assert not any(get_entry(n).flip_ok for n in ("mnist", "kmnist", "digits"))
    assert get_entry("kmnist").classes[:4] == ("o", "ki", "su", "tsu")
    assert all(len(f.sha256) == 64 for f in get_entry("fashion-mnist").files)


# --- verification and the parsed cache -------------------------------------------------------


def test_a_different_file_fails_verification_naming_both_checksums(tiny, tmp_path, make_idx):
    folder = tiny.write(tmp_path / "d")
    other = np.zeros((len(tiny.test_labels),), dtype=np.uint8)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(make_idx(other)))
    entry = get_entry("tiny").file("test_labels")
    with pytest.raises(
        ValueError, match=r"is not the published t10k-labels-idx1-ubyte\.gz"
    ) as error:
        load_dataset("tiny", data_dir=folder)
    assert entry.md5 in str(error.value) and entry.sha256 in str(error.value)


def test_unverifiable_copy_warns_and_still_loads(tiny, tmp_path, monkeypatch):
    entry = catalog.CATALOG["tiny"]
    no_sha = tuple(dataclasses.replace(f, sha256=None) for f in entry.files)
    monkeypatch.setitem(catalog.CATALOG, "tiny", dataclasses.replace(entry, files=no_sha))
    folder = tiny.write(tmp_path / "d", compressed=False)
    with pytest.warns(UserWarning, match="only its structure is checked"):
        load_dataset("tiny", data_dir=folder)


def test_second_load_reads_the_parsed_cache(tiny, system_dir, monkeypatch):
    tiny.write(system_dir / "tiny")
    first = load_dataset("tiny")
    cached = cache_dir("tiny") / "tiny.arrays.npz"
    assert cached.is_file()
    assert [p.name for p in cache_dir("tiny").iterdir()] == ["tiny.arrays.npz"]  # no temp
    monkeypatch.setattr(dataset, "_read_files", _must_not_read)
    second = load_dataset("tiny")
    assert second.train_images.equal(first.train_images) and second.source == first.source


def _must_not_read(*args, **kwargs):
    raise AssertionError("the files were read again despite a valid parsed cache")


def test_parsed_cache_is_rebuilt_when_a_file_changes_or_it_is_damaged(tiny, system_dir):
    folder = tiny.write(system_dir / "tiny")
    load_dataset("tiny")
    cached = cache_dir("tiny") / "tiny.arrays.npz"
    stamp = cached.stat().st_mtime_ns
    victim = folder / "train-labels-idx1-ubyte.gz"
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    load_dataset("tiny")
    assert cached.stat().st_mtime_ns != stamp
    cached.write_bytes(cached.read_bytes()[:-100])  # a damaged cache is never trusted
    data = load_dataset("tiny")
    np.testing.assert_array_equal(data.train_labels.numpy(), tiny.train_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("tiny")


def test_dataset_validates_its_fields():
    data = load_dataset("digits")
    with pytest.raises(ValueError, match="train_images must be uint8"):
        dataclasses.replace(data, train_images=data.train_images.float())
    with pytest.raises(ValueError, match="test_labels must be int64"):
        dataclasses.replace(data, test_labels=data.test_labels[:-1])
    assert repr(data).startswith("Dataset('digits', train=1,437, test=360, image=8x8x1")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.class_counts("val")
