"""A corrupt copy never hides a good one: cache and system copies are verified before use,
a corrupt one is skipped and named, and `cnnlab data fetch` says which copy it uses."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.data import cache_dir, load_dataset, resolve_dataset

runner = CliRunner()


def corrupt(path):
    path.write_bytes(b"not the published file")


def test_a_corrupt_cache_copy_falls_through_to_a_good_system_copy(tiny, system_dir):
    tiny.write(cache_dir("tiny"))
    tiny.write(system_dir / "tiny")
    corrupt(cache_dir("tiny") / "t10k-labels-idx1-ubyte.gz")
    resolved = resolve_dataset("tiny", download=False)
    assert (resolved.source, resolved.path) == ("system", system_dir / "tiny")
    assert len(resolved.skipped) == 1
    assert "the cache copy" in resolved.skipped[0] and "is corrupt" in resolved.skipped[0]
    assert not (cache_dir("tiny") / "t10k-labels-idx1-ubyte.gz").exists()  # a download replaces it


def test_load_dataset_warns_which_copy_it_uses_after_a_corrupt_one(tiny, system_dir):
    tiny.write(cache_dir("tiny"))
    tiny.write(system_dir / "tiny")
    corrupt(cache_dir("tiny") / "train-images-idx3-ubyte.gz")
    with pytest.warns(UserWarning, match=r"is corrupt .*; using .*\(system\)"):
        data = load_dataset("tiny", download=False)
    assert data.train_images.shape[0] == 12


def test_a_corrupt_system_copy_alone_is_named_in_the_error(tiny, system_dir):
    tiny.write(system_dir / "tiny")
    corrupt(system_dir / "tiny" / "train-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match=r"the system copy .* is corrupt"):
        resolve_dataset("tiny", download=False)


def test_data_fetch_uses_the_installed_system_copy_and_says_so(tiny, system_dir):
    tiny.write(system_dir / "tiny")
    result = runner.invoke(app, ["data", "fetch", "tiny"])
    assert result.exit_code == 0, result.output
    assert f"tiny: using the installed system copy at {system_dir / 'tiny'} (verified)" in (
        result.stdout
    )
    assert not cache_dir("tiny").exists()  # nothing downloaded


def test_data_fetch_json_names_the_skipped_corrupt_cache_copy(tiny, system_dir):
    tiny.write(cache_dir("tiny"))
    tiny.write(system_dir / "tiny")
    corrupt(cache_dir("tiny") / "t10k-images-idx3-ubyte.gz")
    result = runner.invoke(app, ["data", "fetch", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "system"
    assert "t10k-images-idx3-ubyte.gz is corrupt" in data["skipped"][0]


def test_a_verified_file_is_not_hashed_again(tiny, system_dir, monkeypatch):
    from cnnlab.data import resolve

    tiny.write(system_dir / "tiny")
    resolve_dataset("tiny", download=False)
    calls = []
    monkeypatch.setattr(resolve, "checksum_problem", lambda *a, **k: calls.append(a) or "")
    resolve_dataset("tiny", download=False)
    assert calls == []
