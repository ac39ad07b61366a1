"""Fixtures for the data tests: an isolated cache, a tiny IDX dataset in the catalogue, and a
local HTTP server on 127.0.0.1 that can answer 404, drop connections and ignore ranges."""

from __future__ import annotations

import gzip
import hashlib
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import catalog, resolve
from cnnlab.data.catalog import DataFile, DataFormat, DatasetEntry

TINY_SHAPE = (1, 6, 5)  # (C, H, W): H != W catches transposed dimensions
TINY_TRAIN, TINY_TEST = 12, 6
TINY_CLASSES = ("zero", "one", "two")
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Raw IDX content (header + uint8 data), written by hand from the format description."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.fixture
def make_idx() -> Callable[..., bytes]:
    return idx_bytes


@dataclass
class TinyData:
    """The tiny dataset's arrays and its four published (gzip) files, by role."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    files: dict[str, bytes]  # file name -> gzip bytes

    def write(self, folder: Path, compressed: bool = True) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            if compressed:
                (folder / name).write_bytes(content)
            else:
                (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress(content))
        return folder


def _tiny_data() -> TinyData:
    rng = np.random.default_rng(7)
    _, h, w = TINY_SHAPE
    arrays = {
        "train_images": rng.integers(0, 256, (TINY_TRAIN, h, w), dtype=np.uint8),
        "train_labels": np.arange(TINY_TRAIN, dtype=np.uint8) % len(TINY_CLASSES),
        "test_images": rng.integers(0, 256, (TINY_TEST, h, w), dtype=np.uint8),
        "test_labels": np.arange(TINY_TEST, dtype=np.uint8) % len(TINY_CLASSES),
    }
    files = {IDX_NAMES[role]: gzip.compress(idx_bytes(a), mtime=0) for role, a in arrays.items()}
    return TinyData(**arrays, files=files)


def tiny_entry(data: TinyData, mirrors: tuple[str, ...] = ()) -> DatasetEntry:
    data_files = tuple(
        DataFile(
            name,
            role,
            md5=hashlib.md5(data.files[name]).hexdigest(),
            sha256=hashlib.sha256(gzip.decompress(data.files[name])).hexdigest(),
        )
        for role, name in IDX_NAMES.items()
    )
    return DatasetEntry(
        name="tiny",
        format=DataFormat.IDX,
        classes=TINY_CLASSES,
        shape=TINY_SHAPE,
        train_count=TINY_TRAIN,
        test_count=TINY_TEST,
        flip_ok=False,
        files=data_files,
        mirrors=mirrors,
    )


@pytest.fixture
def places(tmp_path_factory) -> Path:
    """A folder apart from ``tmp_path`` for the cache and the system datasets."""
    return tmp_path_factory.mktemp("places")


@pytest.fixture(autouse=True)
def isolated_places(places, monkeypatch) -> Path:
    """Every data test gets its own CNNLAB_HOME and an empty system dataset folder."""
    home = places / "cnnlab-home"
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    (places / "system-datasets").mkdir()
    monkeypatch.setattr(resolve, "SYSTEM_DIRS", (places / "system-datasets",))
    return home


@pytest.fixture
def system_dir(places) -> Path:
    return places / "system-datasets"


@pytest.fixture
def tiny(monkeypatch) -> TinyData:
    """The tiny IDX dataset, registered in the catalogue as "tiny" (no mirrors)."""
    data = _tiny_data()
    monkeypatch.setitem(catalog.CATALOG, "tiny", tiny_entry(data))
    return data


@dataclass
class FileServer:
    """What the local server serves and how it misbehaves; it records every request."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> content
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent, then close
    ignore_range: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        state: FileServer = self.server.state  # type: ignore[attr-defined]
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and self.path not in state.ignore_range:
            start = int(range_header.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        drop = state.drop_after.pop(self.path, None)
        self.wfile.write(payload if drop is None else payload[:drop])
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def served_tiny(server, monkeypatch) -> tuple[TinyData, FileServer]:
    """The tiny dataset registered with two mirrors on the local server: /m1/ (empty, so every
    file is a 404 there) and /m2/ (serving the files)."""
    data = _tiny_data()
    for name, content in data.files.items():
        server.files[f"/m2/{name}"] = content
    mirrors = (f"{server.url}/m1/", f"{server.url}/m2/")
    monkeypatch.setitem(catalog.CATALOG, "tiny", tiny_entry(data, mirrors))
    return data, server
