"""Downloads against a local HTTP server: verify, cache atomically, resume, fall back."""

import gzip
import hashlib

import numpy as np
import pytest

from cnnlab.data import cache_dir, load_dataset, resolve_dataset
from cnnlab.data.download import download

NAME = "train-images-idx3-ubyte.gz"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def folder(tmp_path):
    """An empty folder of its own for the downloads."""
    (tmp_path / "downloads").mkdir()
    return tmp_path / "downloads"


@pytest.fixture
def payload() -> bytes:
    return gzip.compress(np.random.default_rng(0).bytes(20_000), mtime=0)  # incompressible


def test_good_download_verifies_and_leaves_no_part(server, payload, folder):
    server.files["/f.gz"] = payload
    dest = folder / "out" / "f.gz"
    seen = []
    assert (
        download(f"{server.url}/f.gz", dest, md5=md5(payload), progress=lambda *a: seen.append(a))
        == dest
    )
    assert dest.read_bytes() == payload
    assert not dest.with_name("f.gz.part").exists()
    assert seen[-1] == ("f.gz", len(payload), len(payload))


def test_resolve_downloads_into_the_cache_then_uses_it_offline(served_tiny):
    data, server = served_tiny
    resolved = resolve_dataset("tiny")
    assert resolved.source == "download" and resolved.path == cache_dir("tiny")
    assert sorted(p.name for p in cache_dir("tiny").iterdir()) == sorted(data.files)
    server.requests.clear()
    again = resolve_dataset("tiny")
    assert again.source == "cache" and server.requests == []
    dataset = load_dataset("tiny")
    np.testing.assert_array_equal(dataset.train_images[:, 0].numpy(), data.train_images)
    np.testing.assert_array_equal(dataset.test_labels.numpy(), data.test_labels)
    assert server.requests == []


def test_mirror_fallback_after_404(served_tiny):
    _, server = served_tiny
    resolve_dataset("tiny")
    first = [path for path, _ in server.requests if path.endswith(NAME)]
    assert first == [f"/m1/{NAME}", f"/m2/{NAME}"]


def test_wrong_checksum_names_file_and_both_checksums(server, payload, folder):
    server.files["/f.gz"] = payload
    dest = folder / "f.gz"
    with pytest.raises(ValueError, match=r"checksum mismatch for f\.gz") as error:
        download(f"{server.url}/f.gz", dest, md5="0" * 32)
    assert "0" * 32 in str(error.value) and md5(payload) in str(error.value)
    assert list(folder.iterdir()) == []  # no file, no .part


def test_wrong_checksum_never_touches_a_good_existing_file(server, payload, folder):
    dest = folder / "f.gz"
    dest.write_bytes(payload)
    server.files["/f.gz"] = payload + b"tampered"
    with pytest.raises(ValueError, match="nothing at"):
        download(f"{server.url}/f.gz", dest, md5=md5(payload))
    assert dest.read_bytes() == payload
    assert [p.name for p in folder.iterdir()] == ["f.gz"]


def test_decoded_sha256_accepts_a_recompressed_copy(server, payload, folder):
    recompressed = gzip.compress(gzip.decompress(payload), compresslevel=1, mtime=123)
    assert md5(recompressed) != md5(payload)
    server.files["/f.gz"] = recompressed
    sha = hashlib.sha256(gzip.decompress(payload)).hexdigest()
    dest = download(f"{server.url}/f.gz", folder / "f.gz", md5=md5(payload), decoded_sha256=sha)
    assert dest.read_bytes() == recompressed


def test_resolve_with_a_bad_mirror_file_leaves_nothing_in_the_cache(served_tiny):
    _, server = served_tiny
    server.files[f"/m2/{NAME}"] += b"junk"
    with pytest.raises(FileNotFoundError, match=f"checksum mismatch for {NAME}") as error:
        resolve_dataset("tiny")
    assert "HTTP 404" in str(error.value)  # the first mirror's reason is kept too
    assert "Three ways to get it" in str(error.value)
    assert not (cache_dir("tiny") / NAME).exists()
    assert not list(cache_dir("tiny").glob("*.part"))


def test_truncated_gzip_download_is_a_clear_error(server, payload, folder):
    server.files["/f.gz"] = payload[: len(payload) // 2]
    sha = hashlib.sha256(gzip.decompress(payload)).hexdigest()
    with pytest.raises(ValueError, match="unreadable") as error:
        download(f"{server.url}/f.gz", folder / "f.gz", md5=md5(payload), decoded_sha256=sha)
    assert "f.gz" in str(error.value)
    assert list(folder.iterdir()) == []


def test_dropped_connection_keeps_part_and_resumes_with_range(server, payload, folder):
    server.files["/f.gz"] = payload
    server.drop_after["/f.gz"] = 1000
    dest = folder / "f.gz"
    with pytest.raises(ConnectionError, match=f"stopped after 1,000 of {len(payload):,} bytes"):
        download(f"{server.url}/f.gz", dest, md5=md5(payload))
    part = folder / "f.gz.part"
    assert part.read_bytes() == payload[:1000] and not dest.exists()
    download(f"{server.url}/f.gz", dest, md5=md5(payload))
    assert server.requests == [("/f.gz", None), ("/f.gz", "bytes=1000-")]
    assert dest.read_bytes() == payload and not part.exists()


def test_server_ignoring_range_restarts_cleanly(server, payload, folder):
    server.files["/f.gz"] = payload
    server.ignore_range.add("/f.gz")
    (folder / "f.gz.part").write_bytes(payload[:700])
    dest = download(f"{server.url}/f.gz", folder / "f.gz", md5=md5(payload))
    assert server.requests == [("/f.gz", "bytes=700-")]
    assert dest.read_bytes() == payload


def test_invalid_partial_file_restarts_from_zero(server, payload, folder):
    server.files["/f.gz"] = payload
    (folder / "f.gz.part").write_bytes(b"x" * 500)  # not the start of this file
    dest = download(f"{server.url}/f.gz", folder / "f.gz", md5=md5(payload))
    assert server.requests == [("/f.gz", "bytes=500-"), ("/f.gz", None)]
    assert dest.read_bytes() == payload


def test_complete_partial_file_is_accepted_after_416(server, payload, folder):
    server.files["/f.gz"] = payload
    (folder / "f.gz.part").write_bytes(payload)
    dest = download(f"{server.url}/f.gz", folder / "f.gz", md5=md5(payload))
    assert dest.read_bytes() == payload and len(server.requests) == 1


def test_dropped_connection_during_resolve_resumes_next_time(served_tiny):
    _, server = served_tiny
    server.drop_after[f"/m2/{NAME}"] = 64
    with pytest.raises(FileNotFoundError, match="stopped after 64"):
        resolve_dataset("tiny")
    assert (cache_dir("tiny") / f"{NAME}.part").stat().st_size == 64
    assert resolve_dataset("tiny").source == "download"
    assert (f"/m2/{NAME}", "bytes=64-") in server.requests
    assert load_dataset("tiny").train_images.shape[0] == 12


def test_unreachable_server_is_a_connection_error(folder):
    with pytest.raises(ConnectionError, match="cannot connect"):
        download("http://127.0.0.1:9/nothing.gz", folder / "x.gz", timeout=2)
