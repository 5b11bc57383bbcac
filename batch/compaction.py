"""Compaction: the small files a stream leaves, rewritten into a few large ones.

Every micro-batch appends a few files to each partition it touches: bronze and quarantine by
ingest date, silver and the decision log by event date. After an hour of 1-second triggers a
day holds thousands of files, and every reader (a rollup, a notebook) pays to open them.
`compact` runs Delta's OPTIMIZE (bin-packing) over the recent partitions of each of those
tables, one commit per table. OPTIMIZE changes no data (`dataChange=false`): readers, time
travel, the change feed and the rollup cursor see nothing new. A conflict with a concurrent
writer (a MERGE rewriting a file being compacted) is retried like any other write.

Example:
    >>> for table in compact(spark, lake, since=dt.date(2026, 11, 20)):      # doctest: +SKIP
    ...     print(table.line())
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gridlake.lake import Lake
from gridlake.retry import guarded_write
from shared_schemas import CURRENT, Contract
from shared_schemas.tables import TableSpec, micro_batch_tables


@dataclass
class TableCompaction:
    """What OPTIMIZE did to one table."""

    path: str
    files_removed: int = 0
    files_added: int = 0
    partitions: int = 0
    version: int | None = None

    def line(self) -> str:
        if not self.files_removed:
            return f"{self.path}: nothing to compact"
        return (f"{self.path}: {self.files_removed} file(s) rewritten as {self.files_added} in "
                f"{self.partitions} partition(s) (v{self.version})")


def recent(days: int, today: dt.date | None = None) -> dt.date:
    """The first of the last `days` UTC days: where a routine compaction starts."""
    today = today or dt.datetime.now(dt.UTC).date()
    return today - dt.timedelta(days=days - 1)


def compacted_tables(contract: Contract = CURRENT) -> tuple[TableSpec, ...]:
    """The tables every micro-batch appends to that are partitioned by one date (the batch
    log, one row a batch, is not partitioned)."""
    return tuple(spec for spec in micro_batch_tables(contract) if len(spec.partition_by) == 1)


def files_per_partition(spark, lake: Lake, spec: TableSpec) -> dict[str, int]:
    """How many data files the table's current snapshot holds in each partition."""
    from collections import Counter

    (column,) = spec.partition_by
    files = spark.read.format("delta").load(lake.path(spec)).inputFiles()
    return dict(Counter(path.split(f"/{column}=", 1)[1].split("/", 1)[0] for path in files))


def compact(spark, lake: Lake, since: dt.date | None = None,
            contract: Contract = CURRENT) -> list[TableCompaction]:
    """OPTIMIZE the partitions dated `since` or later (every partition when None).

    Tables not created yet are left out.
    """
    from delta.tables import DeltaTable

    if since is not None and not isinstance(since, dt.date):
        raise TypeError(f"since is {since!r}; give a datetime.date")
    out = []
    for spec in compacted_tables(contract):
        path = lake.path(spec)
        if not DeltaTable.isDeltaTable(spark, path):
            continue
        (column,) = spec.partition_by

        def optimize(path=path, column=column):
            builder = DeltaTable.forPath(spark, path).optimize()
            if since is not None:
                # `since` is a date object, so the literal is always YYYY-MM-DD.
                builder = builder.where(f"`{column}` >= DATE'{since.isoformat()}'")
            return builder.executeCompaction().select("metrics.*").first()

        metrics = guarded_write(optimize, f"compaction of {spec.path}")
        result = TableCompaction(spec.path, int(metrics["numFilesRemoved"] or 0),
                                 int(metrics["numFilesAdded"] or 0),
                                 int(metrics["partitionsOptimized"] or 0))
        if result.files_removed:  # this OPTIMIZE's commit, not a later write's
            result.version = (DeltaTable.forPath(spark, path).history(20)
                              .where("operation = 'OPTIMIZE'").first()["version"])
        out.append(result)
    return out
