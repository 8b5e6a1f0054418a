"""Warm shutdown: SIGTERM asks a running attempt to stop at its next flush and give its job back."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()


def requested() -> bool:
    """True once this training process was asked to stop (its worker is shutting down)."""
    return _requested.is_set()


@contextmanager
def handing_back_on_sigterm() -> Iterator[None]:
    """While a task runs in a training process, SIGTERM sets the flag instead of killing the process.

    The reporter then answers StopReason.SHUTDOWN at the next flush and the attempt gives its job back to the
    queue. Outside a task SIGTERM keeps Celery's meaning for a pool process: end at once.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: _requested.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def tell_training_processes() -> None:
    """In the worker's main process: pass a warm shutdown on to the pool's training processes.

    Celery's warm shutdown would wait for a running job to end, which can take hours; the pool children
    are told instead, and each gives its job back to the queue at its next flush. A SIGTERM sent to the
    whole process group (systemd) reaches them directly as well; a second one does no harm.
    """
    from billiard.process import active_children

    for child in active_children():
        if child.pid:
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
