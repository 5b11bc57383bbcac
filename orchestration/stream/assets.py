"""bronze_telemetry, quarantine_telemetry, silver_readings: tables the stream writes.

The stream (`gridlake stream`) is its own long-lived process, not a Dagster run, so these are
external assets: Dagster cannot materialize them, it observes them. `stream_observations`
reads what the stream left in the lake (each table's Delta version and row count, the last
micro-batch in `_gridlake/batches`, all with delta-rs, no Spark) and returns it as
`AssetObservation`s, which the `stream_progress` sensor reports.
"""

from __future__ import annotations

from collections.abc import Callable

from dagster import AssetObservation, AssetSpec, MetadataValue

from orchestration.settings import STREAM_GROUP
from shared_schemas.tables import (
    TableSpec,
    bronze_telemetry,
    quarantine_telemetry,
    silver_readings,
)

BRONZE, QUARANTINE, SILVER = "bronze_telemetry", "quarantine_telemetry", "silver_readings"
DATA_VERSION_TAG = "dagster/data_version"


def stream_tables() -> dict[str, Callable[[], TableSpec]]:
    """Asset name → table definition, for the tables the stream writes."""
    return {BRONZE: bronze_telemetry, QUARANTINE: quarantine_telemetry, SILVER: silver_readings}


def _table_metadata(spec: TableSpec) -> dict:
    return {"table_path": spec.path,
            "key": ", ".join(spec.key) or "-",
            "partitioned_by": ", ".join(spec.partition_by) or "-"}


def stream_table_specs() -> list[AssetSpec]:
    """The three stream tables as external assets (bronze feeds quarantine and silver)."""
    deps = {BRONZE: [], QUARANTINE: [BRONZE], SILVER: [BRONZE]}
    return [AssetSpec(name, deps=deps[name], group_name=STREAM_GROUP, kinds={"delta", "spark"},
                      description=f"{spec().description} Written by `gridlake stream` (not a "
                                  "Dagster run) and by late-report backfills; observed by the "
                                  "`stream_progress` sensor.",
                      metadata=_table_metadata(spec()))
            for name, spec in stream_tables().items()]


def _batch_metadata(prefix: str, batch) -> dict:
    if batch is None:
        return {f"{prefix}_time": "none yet"}
    return {f"{prefix}_time": MetadataValue.timestamp(batch.finished_at),
            f"{prefix}": f"{batch.kind} {batch.run_id} batch {batch.batch_id} "
                         f"({batch.records_read} records)"}


def stream_observations(root: str, last_reported: dict[str, int | None] | None = None):
    """Observations of the stream tables of the lake at `root`, each table's Delta version,
    and the stream's last batch (read with delta-rs: no Spark).

    With `last_reported` (name → version reported before), a table whose version has not moved
    gets no observation and is not counted again. The Delta version is also the observation's
    data version, so the UI can tell when the rollups are older than silver.
    """
    from batch.lake_state import last_batches, table_rows, table_version

    stream_batch, any_batch = last_batches(root, "stream")
    versions = {name: table_version(root, spec()) for name, spec in stream_tables().items()}
    events = []
    for name, spec in stream_tables().items():
        version = versions[name]
        if last_reported is not None and last_reported.get(name) == version:
            continue
        metadata = {"delta_version": version if version is not None else "none",
                    "dagster/row_count": table_rows(root, spec(), version),
                    "path": MetadataValue.path(f"{root.rstrip('/')}/{spec().path}"),
                    **_batch_metadata("last_stream_batch", stream_batch),
                    **_batch_metadata("last_write", any_batch)}
        tags = {DATA_VERSION_TAG: str(version)} if version is not None else None
        events.append(AssetObservation(asset_key=name, metadata=metadata, tags=tags))
    return events, versions, stream_batch
