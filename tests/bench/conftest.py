"""Fixtures for the bench tests: this machine as one without a GPU, or as one that has CUDA.

The no-GPU paths (a clear refusal of ``cuda``, "no GPU" notes, NVML's "no CUDA GPU") run on every
machine, a CUDA one included, by making ``torch.cuda`` answer as it does without a GPU.
"""

import sys

import pytest
import torch


@pytest.fixture
def no_cuda(monkeypatch):
    """What torch answers on a machine without a GPU: no CUDA device, no MPS, and no pynvml
    (an NVML call that slipped through would then say "pynvml not installed", not "no CUDA")."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError


@pytest.fixture
def cuda_reported(monkeypatch):
    """torch says one CUDA device exists: for code that only asks, and never touches the GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
