"""Ctrl-C as a request: the first one asks a long loop to stop at its next safe point (a step
boundary, where a checkpoint can be written); a second one interrupts at once, as usual."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class StopRequest:
    """Set by the SIGINT handler; the loop stops at the next step boundary."""

    requested = False


@contextlib.contextmanager
def sigint_requests_stop(stop: StopRequest) -> Iterator[None]:
    """The first Ctrl-C asks the loop to stop cleanly; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def request_stop(signum: int, frame: Any) -> None:
        stop.requested = True
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
