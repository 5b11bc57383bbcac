"""Run a local daemon (a Kafka broker, a Spark cluster) in the foreground until Ctrl-C."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any


def run_until_stopped(folder: Path | None, prefix: str,
                      start: Callable[[Path], AbstractContextManager],
                      ready: Callable[[Any, Path], None],
                      failure: Callable[[Any, Path], Exception | None], stopped: str) -> int:
    """Start `start(folder)`, call `ready`, and wait for SIGINT/SIGTERM; then stop it in order.

    Parameters:
        folder: where the daemon keeps its data; None: a temporary folder, removed on exit.
        failure: the error to raise when the daemon died on its own (None while it runs).
    """
    # SIGINT and SIGTERM only set a flag, so the daemon is always stopped in order, even when
    # the signal arrives while it is still starting.
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    work = folder or Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with start(work) as daemon:
            ready(daemon, work)
            while not stop.wait(0.5):
                error = failure(daemon, work)
                if error is not None:
                    raise error
        print(stopped, flush=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if folder is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0
