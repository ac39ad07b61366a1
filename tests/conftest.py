"""Shared fixtures: every test session gets its own cnnlab cache, never the user's.

Also: ``gpu`` tests are skipped without CUDA (hardware), ``requires(missing, what)`` tests fail
when something the setup installs is missing (a test that skips for it would check nothing in
a setup that lost it), and ``$CNNLAB_MUTATION`` switches on the mutation plugin
(tests/mutations/plugin.py).
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

MUTATION_PLUGIN = Path(__file__).parent / "mutations" / "plugin.py"


def pytest_configure(config):
    if os.environ.get("CNNLAB_MUTATION"):
        spec = importlib.util.spec_from_file_location("cnnlab_mutation_plugin", MUTATION_PLUGIN)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        config.pluginmanager.register(module.plugin_from_environment(), "cnnlab-mutation")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires"):
        missing, what = mark.args
        if missing:
            pytest.fail(
                f"{what} is missing: `make test` installs the Python packages (the dev extra) "
                "and .ci/run the Debian packages",
                pytrace=False,
            )


def pytest_collection_modifyitems(config, items):
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_tests:
        return
    import torch  # only when a gpu test was collected: the import takes seconds

    if torch.cuda.is_available():
        return
    for item in gpu_tests:
        item.add_marker(pytest.mark.skip(reason="needs CUDA"))


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
