"""Stopping on SIGINT or SIGTERM: the first signal asks the running method to stop at its
next checkpoint, the second stops it at once."""
from __future__ import annotations

import contextlib
import logging
import signal
import threading

log = logging.getLogger("harness")


@contextlib.contextmanager
def stop_on_signals():
    """Yield a function telling whether SIGINT or SIGTERM arrived (its ``signals``: which).
    The first signal only asks the running method to stop at its next checkpoint; the
    second acts at once."""
    received: list[int] = []

    def requested() -> bool:
        return bool(received)

    requested.signals = received

    def handle(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        log.warning("%s: stopping at the next checkpoint (send it again to stop now)",
                    signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
