"""Named crash points in the write path, for fault-injection (chaos) runs.

`GRIDLAKE_CRASH_AT=POINT` or `POINT@BATCH` makes the process kill itself with SIGKILL (what
`kill -9` sends: no clean-up, no `finally`) when a write reaches POINT, in micro-batch BATCH
(any batch when omitted). Unset, every point is a no-op. The points, in the order a batch
reaches them:

| point | committed so far | not yet |
|---|---|---|
| `after_bronze` | bronze | quarantine, silver, logs, Spark's batch commit |
| `after_quarantine` | bronze, quarantine | silver, logs, commit |
| `after_silver` | bronze, quarantine, silver | decision log, batch log, commit |
| `after_write` | every data table and the decision log | batch log, commit |
| `after_batch_log` | every Delta table | Spark's checkpoint commit marker |

Example:
    $ GRIDLAKE_CRASH_AT=after_silver@1 gridlake stream --source files:IN --lake L --available-now
    $ gridlake stream --source files:IN --lake L --available-now   # replays batch 1: no change
"""

from __future__ import annotations

import os
import signal
import sys

CRASH_AT = "GRIDLAKE_CRASH_AT"
POINTS = ("after_bronze", "after_quarantine", "after_silver", "after_write", "after_batch_log")


def crash_point(point: str, batch_id: int) -> None:
    """Die by SIGKILL here if `GRIDLAKE_CRASH_AT` names this point (and batch)."""
    setting = os.environ.get(CRASH_AT)
    if not setting:
        return
    name, _, batch = setting.partition("@")
    if name not in POINTS or (batch and not batch.isdigit()):
        raise ValueError(f"{CRASH_AT}={setting!r} is not POINT or POINT@BATCH with POINT one of "
                         f"{', '.join(POINTS)}")
    if name != point or (batch and int(batch) != batch_id):
        return
    sys.stdout.flush()
    # The whole process group when this process leads it (the JVM dies with it, as under
    # kill -9 of a service), else this process alone (the JVM exits when its stdin closes).
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
