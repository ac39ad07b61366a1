"""The page's server: FastAPI routes over a ``ViewSession``, and ``serve`` with uvicorn.

Every asset is a file in ``static/`` served from here (no CDN, no build step), so the page works
offline. Images travel as raw uint8 pixels of the training data's shape, base64-encoded: the page
draws and downsamples, the server only runs the model. Bad input is a JSON ``{"error": ...}``
with status 400-415 naming what was received and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from cnnlab.summary import LayerKind
from cnnlab.train.predict import prepare_image
from cnnlab.view.session import LayerRecord, ViewSession
from cnnlab.view.trace import explain_cell, slide_examples, slide_kernels, slide_trace

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_BYTES = 5 * 2**20
JSON_ALLOWANCE = 2**20  # bytes a request may hold beyond the upload limit (an image in base64)
MAX_TEST_IMAGES = 100  # per request
MAX_MAPS_PER_LAYER = 64  # feature maps sent per layer; the page says how many it shows
MAX_VALUES_PER_LAYER = 65_536  # and at most this many numbers (256 KiB): 5 maps of 112x112
STATIC_FILES = {
    "view.js": "text/javascript",
    "layers.js": "text/javascript",
    "slide.js": "text/javascript",
    "view.css": "text/css",
}
TRACED_KINDS = (LayerKind.CONV, LayerKind.MAX_POOL, LayerKind.AVG_POOL, LayerKind.GLOBAL_AVG_POOL)


class PixelsBody(BaseModel):
    pixels: str  # base64 of C*H*W uint8 values, channel by channel, row by row


class CellBody(PixelsBody):
    layer: int
    channel: int
    row: int
    col: int


class SlideBody(BaseModel):
    example: str
    row: int = 0
    col: int = 0
    stride: int | None = None
    padding: int | None = None
    size: int | None = None
    kernel: str = "slide"


class HttpError(Exception):
    """A refusal with its HTTP status: 413 too large, 415 not an image."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class LastForward:
    """The most recent forward pass, kept so that clicking cells of one image is instant.

    One attribute holding (pixels, records), replaced whole: requests run in threads, and a
    reader must never pair one image's pixels with another's layers.
    """

    entry: tuple[bytes, list[LayerRecord]] | None = None


def create_app(
    session: ViewSession, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
) -> FastAPI:
    """The FastAPI app of the page over ``session``."""
    app = FastAPI(title="cnnlab view", docs_url=None, redoc_url=None, openapi_url=None)
    static = resources.files("cnnlab.view") / "static"
    last = LastForward()

    def forward(pixels: bytes) -> list[LayerRecord]:
        entry = last.entry
        if entry is None or entry[0] != pixels:
            entry = (pixels, session.forward(pixels))
            last.entry = entry
        return entry[1]

    body_limit = max_upload_bytes + JSON_ALLOWANCE

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next: Any) -> Any:
        # before the body is read: a JSON request holds one small image, an upload at most the
        # limit (checked exactly while it is read)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > body_limit:
            message = f"the request is too large ({int(declared):,} bytes): expected at most "
            return JSONResponse({"error": f"{message}{body_limit:,}"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(error).split())}, status_code=422)

    @app.exception_handler(HttpError)
    async def http_error(request: Request, error: HttpError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        parts = []
        for problem in error.errors():
            where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
            received = f" Received: {where}={problem['input']!r}" if "input" in problem else ""
            parts.append(f"{where}: {problem.get('msg', 'invalid')}.{received}")
        return JSONResponse({"error": " ".join(parts)[:1000]}, status_code=422)

    @app.get("/")
    def index() -> FileResponse:
        with resources.as_file(static / "index.html") as path:
            return FileResponse(path, media_type="text/html")

    @app.get("/favicon.ico", status_code=204)
    def favicon() -> None:
        return None

    @app.get("/static/{name}")
    def static_file(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HttpError(404, f"no such file: /static/{name}")
        with resources.as_file(static / name) as path:
            return FileResponse(path, media_type=STATIC_FILES[name])

    @app.get("/api/model")
    def model_info() -> dict[str, Any]:
        return describe(session, max_upload_bytes)

    @app.get("/api/test-images")
    def test_images(start: int = 0, count: int = 24) -> dict[str, Any]:
        return test_image_page(session, start, count)

    @app.post("/api/predict")
    def predict(body: PixelsBody) -> dict[str, Any]:
        begin = time.perf_counter()
        top = session.predict(decode_pixels(body.pixels))
        return {"top": top_list(top), "server_ms": 1000 * (time.perf_counter() - begin)}

    @app.post("/api/activations")
    def activations(body: PixelsBody) -> dict[str, Any]:
        pixels = decode_pixels(body.pixels)
        begin = time.perf_counter()
        records = forward(pixels)
        return {
            "top": top_list(session.predict(pixels)),
            "layers": [layer_maps(record) for record in records],
            "server_ms": 1000 * (time.perf_counter() - begin),
        }

    @app.post("/api/explain")
    def explain(body: CellBody) -> dict[str, Any]:
        records = forward(decode_pixels(body.pixels))
        if not 0 <= body.layer < len(records):
            raise ValueError(
                f"layer must be an integer in 0..{len(records) - 1}. Received: layer={body.layer}"
            )
        return explain_cell(records[body.layer], body.channel, body.row, body.col)

    @app.post("/api/upload")
    async def upload(request: Request, name: str = "upload", invert: bool = False) -> dict:
        data = await read_limited(request, max_upload_bytes, name)
        image = image_from_bytes(data, name, session.data_shape, invert=invert)
        return {"pixels": encode_pixels(image), "name": name}

    @app.get("/api/slides")
    def slides() -> dict[str, Any]:
        return {"examples": slide_examples(), "kernels": slide_kernels()}

    @app.post("/api/slide")
    def slide(body: SlideBody) -> dict[str, Any]:
        return slide_trace(
            body.example,
            row=body.row,
            col=body.col,
            stride=body.stride,
            padding=body.padding,
            size=body.size,
            kernel=body.kernel,
        )

    return app


def describe(session: ViewSession, max_upload_bytes: int) -> dict[str, Any]:
    """What the page shows before any image: the model, its layers and first-layer kernels."""
    predictor = session.predictor
    layers_model = session.layers_model
    layers = [
        {
            "index": row.index,
            "path": row.path,
            "module_type": row.module_type,
            "kind": row.kind.value,
            "output_shape": list(row.output_shape),
            "params": row.params,
            "activation": row.activation,
            "kernel_size": None if row.kernel_size is None else list(row.kernel_size),
            "stride": None if row.stride is None else list(row.stride),
            "traceable": row.kind in TRACED_KINDS,
        }
        for row in session.layers
    ]
    return {
        "model": predictor.model_name,
        "source": session.source,
        "kind": session.kind,
        "trained_on": predictor.data_name or None,
        "classes": list(predictor.classes),
        "data_shape": list(session.data_shape),
        "model_shape": list(predictor.adapter.model_shape),
        "adapter": predictor.adapter.description,
        "total_params": sum(row.params for row in session.layers),
        "layers": layers,
        "first_kernels": first_kernels(session),
        "test_images": 0 if session.dataset is None else int(session.dataset.test_labels.shape[0]),
        "test_data": None if session.dataset is None else session.dataset.name,
        "data_note": session.data_note,
        "layers_note": session.layers_note,
        "max_upload_bytes": max_upload_bytes,
        "runtime": "pytorch" if session.kind != "export" else "export",
        "layers_from": None if layers_model is None else str(layers_model.checkpoint or ""),
    }


def first_kernels(session: ViewSession) -> dict[str, Any] | None:
    """The first convolution's weights (C_out, C_in, kH, kW), drawn as small images."""
    if session.layers_model is None:
        return None
    model = session.layers_model.model
    for row in session.layers:
        if row.kind is LayerKind.CONV:
            weight = model.get_submodule(row.path).weight.detach().float()
            return {"layer": row.index, "path": row.path, "weights": weight.tolist()}
    return None


def test_image_page(session: ViewSession, start: int, count: int) -> dict[str, Any]:
    dataset = session.dataset
    if dataset is None:
        raise ValueError(session.data_note or "no test images: give --data NAME")
    total = int(dataset.test_labels.shape[0])
    if not 0 <= start < total:
        raise ValueError(f"start must be an integer in 0..{total - 1}. Received: start={start}")
    if not 1 <= count <= MAX_TEST_IMAGES:
        raise ValueError(
            f"count must be an integer from 1 to {MAX_TEST_IMAGES}. Received: count={count}"
        )
    images = dataset.test_images[start : start + count]
    labels = dataset.test_labels[start : start + count].tolist()
    return {
        "start": start,
        "total": total,
        "images": [
            {"index": start + i, "label": dataset.classes[label], "pixels": encode_pixels(image)}
            for i, (image, label) in enumerate(zip(images, labels, strict=True))
        ],
    }


def layer_maps(record: LayerRecord) -> dict[str, Any]:
    """A layer's shown output as float32 bytes in base64, with its range for the colours."""
    shown = record.shown.float()
    kept = shown
    if shown.dim() == 3:
        area = shown.shape[1] * shown.shape[2]
        kept = shown[: max(1, min(MAX_MAPS_PER_LAYER, MAX_VALUES_PER_LAYER // area))]
    values = kept.contiguous().numpy().astype("<f4")
    return {
        "index": record.row.index,
        "shape": list(shown.shape),
        "maps_sent": int(kept.shape[0]) if shown.dim() == 3 else None,
        "min": float(values.min()),
        "max": float(values.max()),
        "values": base64.b64encode(values.tobytes()).decode("ascii"),
        "after_activation": record.after is not None,
    }


def top_list(top: list[tuple[float, str]]) -> list[dict[str, Any]]:
    return [{"class": name, "probability": p} for p, name in top]


def decode_pixels(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"pixels must be base64 text (A-Z, a-z, 0-9, +, /, =). Received: {text[:40]!r}"
        ) from None


def encode_pixels(image: torch.Tensor) -> str:
    """A uint8 image (C, H, W) as base64 text, channel by channel, row by row."""
    return base64.b64encode(image.contiguous().numpy().astype(np.uint8).tobytes()).decode("ascii")


async def read_limited(request: Request, limit: int, name: str) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    mib = f" ({limit / 2**20:.1f} MiB)" if limit >= 2**20 else ""
    refusal = HttpError(
        413,
        f"{name} is too large: uploads are limited to {limit:,} bytes{mib}; "
        "expected a smaller image",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refusal
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise refusal
        chunks.append(chunk)
    if size == 0:
        raise ValueError(f"{name} is empty: expected an image file (PNG, JPEG, BMP, ...)")
    return b"".join(chunks)


def image_from_bytes(
    data: bytes, name: str, data_shape: tuple[int, int, int], *, invert: bool = False
) -> torch.Tensor:
    """An uploaded picture as a uint8 image of the training data's shape (``prepare_image``:
    letterboxed on its own background, a decompression bomb refused)."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-view-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            return prepare_image(path, data_shape, invert=invert)
        except ValueError as error:
            raise HttpError(415, str(error).replace(str(path), name)) from None


def check_host(host: str) -> str:
    """An IP address or ``localhost``; anything else is refused before a socket is opened."""
    if host == "localhost":
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"host must be an IP address such as 127.0.0.1 (this machine only) or 0.0.0.0 (every "
            f"network interface), or localhost. Received: host={host!r}"
        ) from None
    return host


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a ValueError that names the port and why it cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every keep-alive response waits ~40 ms for the browser's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ValueError(
            f"cannot listen on {host}:{port} ({error.strerror or error}): expected a free port; "
            f"choose another with port=N. Received: port={port}"
        ) from None
    return sock


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` on an already bound socket until Ctrl-C."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
