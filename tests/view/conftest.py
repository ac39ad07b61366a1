"""A LeNet-like trained a few steps on the bundled digits (8x8, offline), opened for the page."""

from __future__ import annotations

import fastapi  # noqa: F401  (cnnlab imports the server's packages inside view/)
import pytest
import torch

import cnnlab
from cnnlab.train import default_config


def pytest_configure(config):
    # Starlette's TestClient asks for "httpx2"; httpx is what this project uses.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """30 steps of LeNet-like on digits, one thread: a run folder in a few seconds."""
    out = tmp_path_factory.mktemp("view") / "run"
    config = default_config(
        "lenet-like", "digits", epochs=3, steps=30, threads=1, device="cpu", out=str(out)
    )
    cnnlab.train(config, progress=False)
    return out


@pytest.fixture(scope="session")
def session(digits_run):
    from cnnlab.view.session import open_view

    return open_view(digits_run)


@pytest.fixture(scope="session")
def test_image(session) -> bytes:
    """The first digits test image as the page sends it: C*H*W uint8 bytes."""
    return session.dataset.test_images[0].contiguous().numpy().tobytes()


@pytest.fixture(scope="session")
def network_input(session):
    """pixels -> what the network reads: resized to 32x32 and normalised, (1, 1, 32, 32)."""
    from cnnlab.data.device import preprocess

    layers = session.layers_model

    def convert(pixels: bytes) -> torch.Tensor:
        return preprocess(session.image_tensor(pixels), layers.normalization, layers.adapter)

    return convert
