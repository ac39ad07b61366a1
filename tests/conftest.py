"""Shared fixtures: every test session gets its own cnnlab cache, never the user's."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def isolated_cnnlab_home(tmp_path_factory):
    """Point $CNNLAB_HOME at a fresh folder for the whole session (subprocesses inherit it)."""
    previous = os.environ.get("CNNLAB_HOME")
    os.environ["CNNLAB_HOME"] = str(tmp_path_factory.mktemp("cnnlab-home"))
    yield
    if previous is None:
        os.environ.pop("CNNLAB_HOME", None)
    else:
        os.environ["CNNLAB_HOME"] = previous
