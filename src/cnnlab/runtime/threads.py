"""CPU threads: set torch's (and, when asked, the BLAS pools') count for a block, then restore."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None, *, blas: bool = False) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block and the caller's setting afterwards.

    ``threads=None`` changes nothing. With ``blas=True`` the native thread pools other
    libraries use (OpenBLAS/MKL/OpenMP under NumPy and scikit-learn, via threadpoolctl) are
    limited too, so a classical model and a CNN compete on the same number of cores.
    """
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if blas:
            from threadpoolctl import threadpool_limits  # scikit-learn's dependency

            with threadpool_limits(limits=threads):
                yield
        else:
            yield
    finally:
        torch.set_num_threads(previous)
