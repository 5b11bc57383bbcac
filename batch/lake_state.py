"""What the lake holds, read without Spark: for schedulers and sensors that poll it often,
and for the small bookkeeping reads of a rollup run.

Dagster evaluates sensors in a code-server process that its daemon replaces every minute, with
a 60-second limit per evaluation; starting a Spark driver there would mean a new JVM each
minute. A Spark query of even a tiny Delta table costs a rollup run about half a second of
snapshot and file-listing jobs; the same read here takes milliseconds. These reads use delta-rs
(`deltalake`) instead, and polars where rows of a table with deletion vectors are read
(`scan`), touching only Delta logs, file statistics and a few small columns: table versions and
row counts, the newest rows of the batch log, the UTC days silver's change data feed says
changed, the rollup cursor, the gold days computed from a newer silver version, and the days
a date-partitioned table holds.

Lake roots are local folders or object-store URLs (`s3a://` is read as `s3://`; the endpoint
and region from the same `GRIDLAKE_S3_*` variables as the Spark session, credentials from the
usual AWS environment variables). With Delta's DynamoDB log store
(`GRIDLAKE_DELTA_DYNAMODB_TABLE`) these reads see a commit once its file is in the log folder:
a writer that died between its DynamoDB entry and that copy leaves a version they see only
after the next Spark writer of the table has completed it.

Example:
    >>> changed_days("/data/lake", first_version=12, last_version=15)      # doctest: +SKIP
    [datetime.date(2026, 11, 2), datetime.date(2026, 11, 3)]
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from gridlake.lake import actions_in, commit_file, is_data_gone, read_text
from gridlake.session import object_store_options, s3_endpoint_and_region
from shared_schemas.tables import (
    TableSpec,
    batch_log,
    gold_daily_device_rollups,
    rollup_log,
    silver_readings,
)

log = logging.getLogger("gridlake.lake_state")


@dataclass(frozen=True)
class LastBatch:
    """A row of the batch log (`_gridlake/batches`): one micro-batch or load."""

    run_id: str
    batch_id: int
    kind: str
    finished_at: dt.datetime
    records_read: int
    silver_version: int | None


def _uri(root: str, spec: TableSpec | str) -> str:
    relative = spec if isinstance(spec, str) else spec.path
    root = "s3://" + root[len("s3a://"):] if root.startswith("s3a://") else root
    return f"{root.rstrip('/')}/{relative}"


def delta_table(root: str, spec: TableSpec | str, version: int | None = None):
    """The delta-rs table of `spec` under `root` (at `version`); None when it does not exist."""
    from deltalake import DeltaTable

    uri = _uri(root, spec)
    options = object_store_options(os.environ) if "://" in uri else None
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    return DeltaTable(uri, version=version, storage_options=options)


def table_version(root: str, spec: TableSpec) -> int | None:
    """The table's latest Delta version; None when it does not exist yet."""
    table = delta_table(root, spec)
    return None if table is None else table.version()


def scan(root: str, spec: TableSpec | str, version: int | None = None):
    """The table (at `version`) as a polars LazyFrame; None when it does not exist.

    Polars applies deletion vectors (silver has them); delta-rs's own scanner does not, so rows
    of a table that may carry them are read through here, never `delta_table(...).to_pyarrow_*`.
    """
    import polars as pl

    table = delta_table(root, spec, version)
    return None if table is None else pl.scan_delta(table)


def _has_deletion_vectors(table) -> bool:
    return "deletionVectors" in (table.protocol().reader_features or [])


def table_rows(root: str, spec: TableSpec, version: int | None = None) -> int:
    """Rows in the table (at `version`), from the file statistics in its Delta log (counted by
    a scan where deletion vectors may hide rows the statistics still include)."""
    import polars as pl
    import pyarrow as pa

    table = delta_table(root, spec, version)
    if table is None:
        return 0
    if not _has_deletion_vectors(table):
        counts = pa.table(table.get_add_actions(flatten=True)).column("num_records").to_pylist()
        if None not in counts:  # else a file was written without statistics: count it
            return int(sum(counts))
    return int(pl.scan_delta(table).select(pl.len()).collect().item())


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def last_batches(root: str, kind: str = "stream") -> tuple[LastBatch | None, LastBatch | None]:
    """(the newest batch-log row of `kind`, the newest row of any kind)."""
    import pyarrow as pa

    table = delta_table(root, batch_log())
    if table is None:
        return None, None
    columns = ["run_id", "batch_id", "kind", "finished_at", "records_read", "silver_version"]
    rows = pa.table(table.to_pyarrow_table(columns=columns)).to_pylist()
    if not rows:
        return None, None

    def newest(candidates: list[dict]) -> LastBatch | None:
        if not candidates:
            return None
        row = max(candidates, key=lambda r: (_as_utc(r["finished_at"]), r["batch_id"]))
        return LastBatch(row["run_id"], row["batch_id"], row["kind"],
                         _as_utc(row["finished_at"]), row["records_read"],
                         row["silver_version"])

    return newest([r for r in rows if r["kind"] == kind]), newest(rows)


def silver_version(root: str) -> int | None:
    return table_version(root, silver_readings())


def changed_days(root: str, first_version: int, last_version: int) -> list[dt.date]:
    """UTC days (`event_date`) with a silver row inserted, updated or deleted in versions
    first..last (both included), from silver's change data feed.

    Where VACUUM took change data the feed needs (the rollups did not run within silver's
    retention), the days come from silver's commit files instead (`days_in_commits`); where
    those were cleaned up too, they are every day silver or the device rollups hold (a day
    whose readings were all deleted is in gold only). Either is said in a warning,
    and neither leaves a cursor stuck before versions that can no longer be read.
    """
    import pyarrow as pa

    if first_version > last_version:
        return []
    table = delta_table(root, silver_readings())
    if table is None:
        return []
    try:
        reader = table.load_cdf(starting_version=first_version, ending_version=last_version,
                                columns=["event_date"])
        days = pa.table(pa.RecordBatchReader.from_stream(reader)).column("event_date")
        return sorted(d for d in days.unique().to_pylist() if d is not None)
    except Exception as error:
        if not is_data_gone(error):
            raise
    span = f"v{first_version}..v{last_version}"
    days = days_in_commits(root, first_version, last_version)
    if days is not None:
        log.warning("silver's change data for %s was partly vacuumed: the days that changed "
                    "are taken from its commits instead", span)
        return days
    log.warning("silver's change data and commits for %s are partly gone (vacuumed, cleaned "
                "up): every day silver or the device rollups hold counts as changed", span)
    # Gold's days too: a day whose readings were all deleted is in gold only.
    return sorted(days_held(root, silver_readings()) | days_held(
        root, gold_daily_device_rollups()))


def days_held(root: str, spec: TableSpec) -> set[dt.date]:
    """The values of a date-partitioned table's partition column, from its files' entries in
    the Delta log (none when the table does not exist)."""
    import pyarrow as pa

    table = delta_table(root, spec)
    if table is None:
        return set()
    column = f"partition.{spec.partition_by[0]}"
    values = pa.table(table.get_add_actions(flatten=True)).column(column)
    return {v for v in values.unique().to_pylist() if v is not None}


def days_in_commits(root: str, first_version: int, last_version: int) -> list[dt.date] | None:
    """The `event_date` partitions of the files silver's commits first..last added or removed
    with a data change (the commit files outlive the data and change data VACUUM deletes);
    None when one of those commit files is gone, or an action does not name its partition.

    Example:
        >>> days_in_commits("/data/lake", 40, 41)                       # doctest: +SKIP
        [datetime.date(2026, 11, 2)]
    """
    read = _text_reader(root)
    spec = silver_readings()
    table, column = _uri(root, spec), spec.partition_by[0]
    days: set[str] = set()
    for version in range(first_version, last_version + 1):
        text = read(commit_file(table, version))
        if text is None:
            return None
        for action in actions_in(text, ("add", "remove")):
            change = next(iter(action.values()))
            if not change.get("dataChange", True):
                continue
            day = (change.get("partitionValues") or {}).get(column)
            if not day:
                return None
            days.add(day)
    return sorted(dt.date.fromisoformat(d) for d in days)


def _text_reader(root: str) -> Callable[[str], str | None]:
    """A reader of small files under `root`: a file's text, or None when it is not there. Local
    folders are read directly; `s3://` URIs through one pyarrow S3 filesystem, set up as the
    delta-rs reads are (endpoint and region from the `GRIDLAKE_S3_*` variables)."""
    if "://" not in _uri(root, ""):
        return read_text
    from pyarrow import fs

    endpoint, region = s3_endpoint_and_region(os.environ)
    s3 = fs.S3FileSystem(endpoint_override=endpoint, region=region,
                         scheme="http" if (endpoint or "").startswith("http://") else "https")

    def read(uri: str) -> str | None:
        try:
            with s3.open_input_stream(uri.split("://", 1)[1]) as stream:
                return stream.read().decode("utf-8")
        except FileNotFoundError:
            return None

    return read


def rollup_cursor(root: str, mode: str) -> int | None:
    """The newest silver version a rollup run of `mode` recorded in the rollup log (None
    before the first such run)."""
    import polars as pl

    log = scan(root, rollup_log())
    if log is None:
        return None
    return (log.filter(pl.col("mode") == mode)
            .select(pl.col("silver_version").max()).collect().item())


def days_computed_after(root: str, spec: TableSpec, column: str, days: list[dt.date],
                        version: int) -> set[dt.date]:
    """Which of `days` (values of the date column `column`) hold rows of the table computed
    from a silver version newer than `version` (its `silver_version` column)."""
    import polars as pl

    table = scan(root, spec)
    if table is None or not days:
        return set()
    newer = (table.filter(pl.col(column).is_in(days) & (pl.col("silver_version") > version))
             .select(column).unique().collect())
    return set(newer.get_column(column).to_list())
