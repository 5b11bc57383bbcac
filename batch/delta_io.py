"""Delta reads and writes shared by the batch jobs: pinned versions, date-replacing writes.

Every batch write goes through `gridlake.retry.guarded_write`: it retries lost write races
and holds the process's write lock while it commits (see there why the lock matters).

Example:
    >>> dates_predicate("day", [dt.date(2026, 11, 1)])
    "`day` IN (DATE'2026-11-01')"
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import TypeVar

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from gridlake.lake import HISTORY_SEARCHED, newest_commit
from shared_schemas.tables import TableSpec

T = TypeVar("T")


def dates_predicate(column: str, dates: Iterable[dt.date]) -> str:
    """A SQL predicate `column IN (DATE'…', …)` for Delta's replaceWhere option.

    replaceWhere takes SQL text only; the values are `datetime.date` objects rendered by
    `isoformat()` (always YYYY-MM-DD), so nothing a person typed is pasted in.
    """
    days = sorted(set(dates))
    bad = [d for d in days if not isinstance(d, dt.date) or isinstance(d, dt.datetime)]
    if bad or not days:
        raise ValueError(f"dates_predicate needs one or more datetime.date values, got {bad or days}")
    if "`" in column:
        raise ValueError(f"column name {column!r} must not contain a backtick")
    return f"`{column}` IN ({', '.join(f'DATE{d.isoformat()!r}' for d in days)})"


def conform(spec: TableSpec) -> Callable[[DataFrame], DataFrame]:
    """Select a table's columns in its order, cast to its types."""

    def transform(df: DataFrame) -> DataFrame:
        return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in spec.schema])

    return transform


def replace_dates(df: DataFrame, path: str, column: str, dates: Iterable[dt.date],
                  run_id: str, merge_schema: bool = False) -> None:
    """Atomically replace the rows of `dates` (partition column `column`) with `df`.

    A date with no row in `df` is left empty. The commit carries `run_id` as its user metadata,
    so `commit_version` finds it in the table's history. Call it inside `guarded_write`.
    """
    writer = (df.write.format("delta").mode("overwrite")
              .option("replaceWhere", dates_predicate(column, dates))
              .option("userMetadata", run_id))
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    writer.save(path)


def written_by(actions: list[dict], run_id: str) -> bool:
    """Whether a commit's actions name `run_id`: as its user metadata (`replace_dates`) or as
    the application id of its idempotent transaction (`txnAppId`, the write path's appends
    and MERGEs)."""
    return any(a.get("commitInfo", {}).get("userMetadata") == run_id
               or a.get("txn", {}).get("appId") == run_id for a in actions)


def commit_version(spark, path: str, run_id: str, last: int = HISTORY_SEARCHED
                   ) -> int | None:
    """The newest version among the last `last` commits that `run_id` wrote (`written_by`)."""
    found = newest_commit(spark, path, lambda actions: written_by(actions, run_id), last)
    return None if found is None else found[0]


def read_at(spark, path: str, version: int | None = None) -> DataFrame:
    """A Delta table as of `version` (the latest when None)."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)
