"""Turn SIGTERM and SIGINT into a cancel request, so a run killed from outside (Ctrl-C, a batch
system, ``kill``) removes its temporary files like a cancelled run instead of leaving hidden
``.partial.tif`` files behind, and its caller can report it as the failure it is.

Only signals whose current handler Python can restore are taken (a handler installed by the host
application in C, such as ``qgis_process``'s Ctrl-C handler, is left alone: it cancels through
the Processing feedback instead), and only on the main thread, the one Python delivers them to.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class SignalCancel:
    """A cancel callable for the engine: True once a signal arrived or ``also`` says cancel."""

    def __init__(self, also: Callable[[], bool] | None = None):
        self.also = also
        self.signum: int | None = None  # the signal that arrived, if one did

    def __call__(self) -> bool:
        """Whether to stop (the engine asks before every batch)."""
        return self.signum is not None or bool(self.also and self.also())

    def describe(self) -> str:
        """'stopped by SIGTERM' or 'cancelled', for the message that reports the stop."""
        return f"stopped by {signal.Signals(self.signum).name}" if self.signum else "cancelled"


@contextmanager
def cancel_on_signals(also: Callable[[], bool] | None = None,
                      signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
                      ) -> Iterator[SignalCancel]:
    """While inside, ``signals`` set the yielded :class:`SignalCancel` instead of killing the
    process; the previous handlers come back on exit."""
    cancel = SignalCancel(also)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def handler(signum: int, _frame: object) -> None:
            cancel.signum = signum

        for s in signals:
            if signal.getsignal(s) is not None:
                previous[s] = signal.signal(s, handler)
    try:
        yield cancel
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
