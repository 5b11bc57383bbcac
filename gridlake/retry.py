"""Retrying Delta writes that lost an optimistic-concurrency race.

Several writers share the lake (the stream, backfills, reprocessing, erasure). Delta detects
conflicting commits and raises; the losing writer re-reads and tries again, with bounded,
jittered backoff, and every retry is logged. Each write in gridlake is idempotent (transaction
identifiers or replaceWhere), so a retry never applies an update twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("gridlake.retry")
T = TypeVar("T")

# One Delta write at a time per process. MERGE's idempotent transaction id travels in session
# settings, and Delta applies them to any write of the session made while they are set: a
# concurrent append from another thread (Dagster's executor, a test) would be silently skipped.
WRITE_LOCK = threading.RLock()
# How deep the current thread is in guarded writes (an action may start another one).
_inside = threading.local()

# Class names of Delta's concurrency exceptions (Python wrappers and the JVM originals).
_CONFLICT_NAMES = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "ConcurrentWriteException",
    "DELTA_CONCURRENT_APPEND",
    "DELTA_CONCURRENT_DELETE_READ",
    "DELTA_CONCURRENT_DELETE_DELETE",
    "DELTA_CONCURRENT_TRANSACTION",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
    "FileAlreadyExistsException",
)


def is_write_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(name in text for name in _CONFLICT_NAMES)


def retry_conflicts(action: Callable[[], T], what: str, attempts: int = 8,
                    base_delay: float = 0.2, max_delay: float = 5.0) -> T:
    """Run `action`, retrying Delta write conflicts up to `attempts` times."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if not is_write_conflict(exc) or attempt == attempts:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random())
            first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            log.warning("%s lost a write race (attempt %d/%d: %s); retrying in %.2f s",
                        what, attempt, attempts, first_line, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def guarded_write(action: Callable[[], T], what: str) -> T:
    """Run a Delta write holding the process's write lock, retrying lost write races."""

    def locked() -> T:
        with WRITE_LOCK:
            _inside.depth = getattr(_inside, "depth", 0) + 1
            try:
                return action()
            finally:
                _inside.depth -= 1

    return retry_conflicts(locked, what)


def holds_write_lock() -> bool:
    """Is this thread inside a guarded write? Then a thread it waits for must not write: that
    thread would wait for the lock this one holds."""
    return getattr(_inside, "depth", 0) > 0
