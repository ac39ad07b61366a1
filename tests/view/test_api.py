"""Every route of the page's server through FastAPI's TestClient, against the session's model."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi import testclient
from PIL import Image

from cnnlab.train.predict import prepare_image
from cnnlab.view.server import create_app

UPLOAD_LIMIT = 4096


@pytest.fixture(scope="module")
def client(session):
    return testclient.TestClient(create_app(session, max_upload_bytes=UPLOAD_LIMIT))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_page_and_its_assets_are_served_by_cnnlab(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/view.js">' in page.text
    assets = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert assets and all(a.startswith("/static/") for a in assets)  # nothing from elsewhere
    scripts = [client.get(f"/static/{name}.js") for name in ("layers", "slide", "view")]
    assert all(s.status_code == 200 and "javascript" in s.headers["content-type"] for s in scripts)
    assert [a for a in assets if a.endswith(".js")] == [str(s.url.path) for s in scripts]
    assert "/api/explain" in scripts[0].text and "/api/slide" in scripts[1].text
    assert client.get("/static/view.css").headers["content-type"].startswith("text/css")
    missing = client.get("/static/../server.py")
    assert missing.status_code == 404
    assert client.get("/static/server.py").json() == {"error": "no such file: /static/server.py"}
    assert client.get("/favicon.ico").status_code == 204


def test_model_describes_layers_kernels_and_data(client, session):
    info = client.get("/api/model").json()
    assert info["model"] == "lenet-like" and info["trained_on"] == "digits"
    assert info["data_shape"] == [1, 8, 8] and info["model_shape"] == [1, 32, 32]
    assert info["total_params"] == 81_194
    assert [layer["path"] for layer in info["layers"]] == [r.path for r in session.layers]
    assert [layer["traceable"] for layer in info["layers"]] == [True] * 4 + [False] * 4
    assert info["layers"][0]["activation"] == "relu"
    weights = torch.tensor(info["first_kernels"]["weights"])
    torch.testing.assert_close(weights, session.layers_model.model[0].weight.detach())
    assert info["test_images"] == 360 and info["max_upload_bytes"] == UPLOAD_LIMIT


def test_test_images_come_with_their_labels(client, session):
    page = client.get("/api/test-images", params={"start": 5, "count": 3}).json()
    assert page["total"] == 360 and [item["index"] for item in page["images"]] == [5, 6, 7]
    for item in page["images"]:
        pixels = base64.b64decode(item["pixels"])
        assert pixels == session.dataset.test_images[item["index"]].numpy().tobytes()
        label = session.dataset.classes[int(session.dataset.test_labels[item["index"]])]
        assert item["label"] == label
    refused = client.get("/api/test-images", params={"start": 360})
    assert refused.status_code == 422
    assert refused.json()["error"] == "start must be an integer in 0..359. Received: start=360"
    too_many = client.get("/api/test-images", params={"count": 1000}).json()["error"]
    assert too_many == "count must be an integer from 1 to 100. Received: count=1000"


def test_predict_gives_the_top_five_of_the_model(client, session, test_image):
    result = client.post("/api/predict", json={"pixels": b64(test_image)}).json()
    probabilities = session.predictor.predict(session.image_tensor(test_image))[0]
    best = probabilities.argsort(descending=True)[:5]
    assert [row["class"] for row in result["top"]] == [session.predictor.classes[i] for i in best]
    assert result["top"][0]["probability"] == pytest.approx(float(probabilities[best[0]]))
    assert result["server_ms"] >= 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"pixels": b64(bytes(63))}, "pixels must hold C*H*W = 1*8*8 = 64 bytes"),
        ({"pixels": "not base64!"}, "pixels must be base64 text"),
        ({}, "pixels: Field required"),
    ],
)
def test_bad_pixels_are_refused_with_what_was_expected(client, body, message):
    response = client.post("/api/predict", json=body)
    assert response.status_code == 422
    assert message in response.json()["error"]


def test_a_request_larger_than_the_limits_is_refused_before_it_is_read(client):
    body = b'{"pixels": "' + b"A" * (UPLOAD_LIMIT + 2**20) + b'"}'
    response = client.post(
        "/api/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == (
        f"the request is too large ({len(body):,} bytes): expected at most {UPLOAD_LIMIT + 2**20:,}"
    )


def test_activations_hold_every_layers_maps(client, session, test_image, network_input):
    result = client.post("/api/activations", json={"pixels": b64(test_image)}).json()
    assert [layer["shape"] for layer in result["layers"]] == [
        list(r.output_shape) for r in session.layers
    ]
    first = result["layers"][0]
    values = np.frombuffer(base64.b64decode(first["values"]), dtype="<f4").reshape(6, 30, 30)
    conv = session.layers_model.model[0]
    expected = F.relu(F.conv2d(network_input(test_image), conv.weight, conv.bias))[0].detach()
    np.testing.assert_allclose(values, expected.numpy(), atol=1e-6)
    assert first["after_activation"] is True and first["maps_sent"] == 6
    assert first["max"] == pytest.approx(float(expected.max()))


def test_explain_traces_a_cell_to_the_models_activation(client, session, test_image):
    body = {"pixels": b64(test_image), "layer": 2, "channel": 7, "row": 5, "col": 8}
    trace = client.post("/api/explain", json=body).json()
    record = session.forward(test_image)[2]
    assert trace["path"] == "3" and trace["kind"] == "conv" and trace["input_channels"] == 6
    assert trace["result"] == pytest.approx(float(record.before[7, 5, 8]), abs=1e-5)
    assert trace["model_after"] == pytest.approx(float(record.after[7, 5, 8]))
    assert trace["matches"] is True
    assert len(trace["input_maps"]) == 6 and len(trace["input_maps"][0]) == 15
    dense = client.post("/api/explain", json=body | {"layer": 5})
    assert dense.status_code == 422 and "has no feature maps" in dense.json()["error"]
    beyond = client.post("/api/explain", json=body | {"layer": 8}).json()["error"]
    assert beyond == "layer must be an integer in 0..7. Received: layer=8"


def test_upload_turns_a_picture_into_an_image_of_the_data_shape(client, session, tmp_path):
    picture = np.zeros((40, 30), dtype=np.uint8)
    picture[8:32, 12:18] = 255  # a bar: a "1"
    data = png_bytes(picture)
    result = client.post("/api/upload", params={"name": "one.png"}, content=data).json()
    (tmp_path / "one.png").write_bytes(data)
    expected = prepare_image(tmp_path / "one.png", session.data_shape)
    assert base64.b64decode(result["pixels"]) == expected.numpy().tobytes()
    inverted = client.post("/api/upload", params={"name": "one.png", "invert": True}, content=data)
    assert base64.b64decode(inverted.json()["pixels"]) == (255 - expected).numpy().tobytes()


def test_uploads_over_the_limit_or_not_images_are_refused(client):
    big = client.post("/api/upload", params={"name": "big.png"}, content=bytes(UPLOAD_LIMIT + 1))
    assert big.status_code == 413
    assert big.json()["error"] == (
        "big.png is too large: uploads are limited to 4,096 bytes; expected a smaller image"
    )
    text = client.post("/api/upload", params={"name": "notes.txt"}, content=b"hello, not a PNG")
    assert text.status_code == 415
    assert text.json()["error"] == (
        "notes.txt is not an image Pillow can read (expected PNG, JPEG, BMP, ...)"
    )
    empty = client.post("/api/upload", params={"name": "empty.png"}, content=b"")
    assert empty.status_code == 422 and "empty.png is empty" in empty.json()["error"]


def test_slides_list_the_lectures_examples(client):
    slides = client.get("/api/slides").json()
    names = [example["name"] for example in slides["examples"]]
    assert names == [
        "slide-2d",
        "slide-2d-stride2",
        "slide-rgb",
        "slide-pool-max",
        "slide-pool-avg",
    ]
    assert slides["examples"][1]["stride"] == 2 and slides["examples"][3]["kind"] == "max"
    assert slides["kernels"][:2] == ["slide", "sharpen"]


def test_slide_steps_the_window_and_refuses_bad_controls(client):
    first = client.post("/api/slide", json={"example": "slide-rgb"}).json()
    assert first["result"] == -25 and first["sum_equation"] == "308 - 498 + 164 + 1 = -25"
    step = client.post("/api/slide", json={"example": "slide-2d", "row": 0, "col": 1}).json()
    assert step["result"] == 328 and step["window_origin"] == [0, 1]
    refused = client.post("/api/slide", json={"example": "slide-2d", "padding": 9})
    assert refused.status_code == 422
    assert refused.json()["error"] == "padding must be an integer from 0 to 3. Received: padding=9"
