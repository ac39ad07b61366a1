"""A small trained run shared by the deploy tests: LeNet-like, a few steps on offline digits."""

from __future__ import annotations

import pytest

import cnnlab
from cnnlab.train import default_config


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A run folder of LeNet-like trained 2 epochs on digits (seconds on a CPU)."""
    out = tmp_path_factory.mktemp("deploy") / "run"
    cnnlab.train(default_config("lenet-like", "digits", epochs=2, out=str(out), device="cpu"))
    return out
