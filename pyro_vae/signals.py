"""SIGINT and SIGTERM as a polite request: the fit finishes its step, saves, and stops."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Signals that ask a run to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Callable flag: true once a stop signal arrived; ``signal_number`` says which."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def __call__(self) -> bool:
        return self.signal_number is not None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, the first SIGINT or SIGTERM only sets the returned flag; a second one
    interrupts at once (``KeyboardInterrupt``). Outside the main thread nothing is installed."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(number: int, _frame: object) -> None:
        if request():
            raise KeyboardInterrupt
        request.signal_number = number

    previous = {number: signal.signal(number, handle) for number in STOP_SIGNALS}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
