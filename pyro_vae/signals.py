"""SIGINT and SIGTERM: an exception from the first moment, a polite request during a fit.

The command line calls :func:`raise_on_signals` before anything else, so either signal at any
moment becomes :class:`Interrupted` (a ``KeyboardInterrupt`` that knows its signal) and one line
with exit code 128 + the signal's number. Within :func:`stop_on_signals` the first signal only
asks the fit to finish its step, save, and stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Signals that ask a run to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signal_number`` says which."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


#: The signals this process received, first first.
_received: list[int] = []


def signal_received() -> int | None:
    """The first SIGINT or SIGTERM this process received through our handlers, if any."""
    return _received[0] if _received else None


def _raise_interrupted(number: int, _frame: object) -> None:
    _received.append(number)
    raise Interrupted(number)


def raise_on_signals() -> None:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            signal.signal(number, _raise_interrupted)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM are only recorded: importing torch's C extensions
    must not be cut in half (a half-imported torch crashes the next import). After the block
    the first one recorded is raised as :class:`Interrupted`."""

    def record(number: int, _frame: object) -> None:
        _received.append(number)

    previous = {number: signal.signal(number, record) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if _received:
        raise Interrupted(_received[0])


def ignore_signals() -> None:
    """Ignore SIGINT and SIGTERM (while the process exits, after its one line was said)."""
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)


class StopRequest:
    """Callable flag: true once a stop signal arrived; ``signal_number`` says which."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def __call__(self) -> bool:
        return self.signal_number is not None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, the first SIGINT or SIGTERM only sets the returned flag; a second one
    interrupts at once (:class:`Interrupted`). Outside the main thread nothing is installed."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(number: int, _frame: object) -> None:
        _received.append(number)
        if request():
            raise Interrupted(number)
        request.signal_number = number

    previous = {number: signal.signal(number, handle) for number in STOP_SIGNALS}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
