"""Settings that shape the definitions themselves (not resources): partitions, thresholds.

Read from the environment by `Settings.from_env()` when the definitions are built, never at
import. Resources (Spark, the lake) are in `orchestration.resources`.

Example:
    >>> Settings.from_env({}).partitions_start
    '2026-11-01'
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass

from gridlake.errors import BadArgumentError

# Group names shown in the Dagster UI, one per domain.
STREAM_GROUP = "stream"
ROLLUPS_GROUP = "rollups"
LATE_REPORTS_GROUP = "late_reports"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadArgumentError(f"{name} is {text!r}; it must be a whole number") from None
    if value < minimum:
        raise BadArgumentError(f"{name} is {value}; it must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    """What the definitions are built with.

    Parameters:
        partitions_start: first day of the daily rollup partitions (GRIDLAKE_PARTITIONS_START).
        freshness_minutes: silver is stale when the stream's last batch is older
            (GRIDLAKE_FRESHNESS_MINUTES).
        late_settle_seconds: a late-report file is picked up once it has not changed for this
            long, so a file still being copied is not loaded half-written
            (GRIDLAKE_LATE_SETTLE_SECONDS).
    """

    partitions_start: str = "2026-11-01"
    freshness_minutes: int = 15
    late_settle_seconds: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        start = env.get("GRIDLAKE_PARTITIONS_START") or cls.partitions_start
        try:
            dt.date.fromisoformat(start)
        except ValueError:
            raise BadArgumentError(
                f"GRIDLAKE_PARTITIONS_START is {start!r}; expected a date YYYY-MM-DD") from None
        return cls(
            partitions_start=start,
            freshness_minutes=_int(env, "GRIDLAKE_FRESHNESS_MINUTES", cls.freshness_minutes, 1),
            late_settle_seconds=_int(env, "GRIDLAKE_LATE_SETTLE_SECONDS",
                                     cls.late_settle_seconds),
        )
