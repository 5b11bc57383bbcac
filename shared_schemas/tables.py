"""Table definitions of the lake, derived from the contract: columns, keys, partitioning.

Paths are relative to the lake root and fixed by DESIGN.md.

Example:
    >>> from shared_schemas.tables import silver_readings
    >>> silver_readings().key
    ('device_id', 'ts')
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import types as T

from shared_schemas.contract import CURRENT, Contract
from shared_schemas.spark import ENVELOPE_COLUMNS, REASON_TYPE, data_struct

HEADER_TYPE = T.ArrayType(T.StructType([
    T.StructField("key", T.StringType()),
    T.StructField("value", T.BinaryType()),
]))


@dataclass(frozen=True)
class TableSpec:
    """A Delta table of the lake: where it lives, its columns, key and partitioning."""

    path: str
    schema: T.StructType
    partition_by: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def name(self) -> str:
        """The name the table is registered under in a Spark catalog: `layer.table`."""
        return self.path.replace("/", ".")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(self.schema.fieldNames())

    @property
    def table_properties(self) -> dict[str, str]:
        """The Delta properties the table is created with: its own plus `stats_properties`."""
        return {**stats_properties(self.schema, self.partition_by), **self.properties}


# Delta keeps min/max statistics of columns in its log, where no DELETE or VACUUM reaches:
# a device id in a string column's min/max would outlive an erasure. Statistics are kept
# only for columns that cannot hold an identity (numbers, dates, times).
STATS_COLUMNS_PROPERTY = "delta.dataSkippingStatsColumns"
_STATS_TYPES = (T.NumericType, T.DateType, T.TimestampType, T.TimestampNTZType)


def stats_columns(schema: T.StructType, partition_by: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The columns Delta may keep min/max statistics for: no strings, no bytes, no partitions."""
    return tuple(f.name for f in schema.fields
                 if isinstance(f.dataType, _STATS_TYPES) and f.name not in partition_by)


def stats_properties(schema: T.StructType, partition_by: tuple[str, ...] = ()
                     ) -> dict[str, str]:
    """Table properties limiting Delta's data-skipping statistics to `stats_columns`."""
    columns = stats_columns(schema, partition_by)
    if not columns:
        return {"delta.dataSkippingNumIndexedCols": "0"}
    return {STATS_COLUMNS_PROPERTY: ",".join(columns)}


# Every micro-batch commits to bronze, silver, the decision log and the batch log, and Delta
# writes a checkpoint at every commit whose version is a multiple of the table's interval: a
# second or two more for that commit. With the same interval everywhere, those land in the same
# micro-batches (one in ten taking seconds longer, the stream's latency tail). Pairwise coprime
# intervals spread them: 10, 11, 13, 17 and 19 commits, two of which meet only every 110 or more.
CHECKPOINT_INTERVAL_PROPERTY = "delta.checkpointInterval"


def checkpoint_every(commits: int) -> dict[str, str]:
    """The table property making Delta write a log checkpoint every `commits` commits."""
    return {CHECKPOINT_INTERVAL_PROPERTY: str(commits)}


def _fields(*pairs: tuple[str, T.DataType] | tuple[str, T.DataType, bool]) -> list[T.StructField]:
    return [T.StructField(p[0], p[1], p[2] if len(p) > 2 else True) for p in pairs]


# Where a record came from: the same columns in bronze, quarantine and silver (lineage).
SOURCE_COLUMNS = _fields(
    ("record_id", T.StringType(), False),
    ("source_kind", T.StringType(), False),
    ("source_file", T.StringType()),
    ("source_line", T.LongType()),
    ("kafka_topic", T.StringType()),
    ("kafka_partition", T.IntegerType()),
    ("kafka_offset", T.LongType()),
)

# Which run wrote a record: the stream's app id and micro-batch, or a backfill's run.
INGEST_COLUMNS = _fields(
    ("ingest_time", T.TimestampType(), False),
    ("ingest_date", T.DateType(), False),
    ("run_id", T.StringType(), False),
    ("batch_id", T.LongType(), False),
)

RAW_COLUMNS = _fields(
    ("payload", T.BinaryType()),
    ("kafka_key", T.BinaryType()),
    ("headers", HEADER_TYPE),
    ("kafka_timestamp", T.TimestampType()),
)


# One record as read: its id in the source, and the run and batch that read it. Bronze's key,
# and quarantine's (an entry per bronze record).
RECORD_KEY = ("record_id", "run_id", "batch_id")


def bronze_telemetry() -> TableSpec:
    return TableSpec(
        path="bronze/telemetry",
        schema=T.StructType(SOURCE_COLUMNS + RAW_COLUMNS + INGEST_COLUMNS),
        partition_by=("ingest_date",),
        key=RECORD_KEY,
        properties=checkpoint_every(11),
        description="Append-only raw log of every record read, valid or not.",
    )


def quarantine_telemetry() -> TableSpec:
    return TableSpec(
        path="quarantine/telemetry",
        schema=T.StructType(SOURCE_COLUMNS + RAW_COLUMNS + INGEST_COLUMNS + _fields(
            ("reasons", T.ArrayType(REASON_TYPE), False),
            ("reason_codes", T.ArrayType(T.StringType()), False),
            ("contract_version", T.IntegerType(), False),
            ("quarantined_at", T.TimestampType(), False),
            ("status", T.StringType(), False),
            ("replayed_at", T.TimestampType()),
            ("replay_run_id", T.StringType()),
        )),
        partition_by=("ingest_date",),
        key=RECORD_KEY,
        properties=checkpoint_every(17),
        description="Records that failed validation, with every reason.",
    )


def silver_readings(contract: Contract = CURRENT) -> TableSpec:
    envelope = [T.StructField(c, T.StringType()) for c in ENVELOPE_COLUMNS.values()]
    return TableSpec(
        path="silver/readings",
        schema=T.StructType(
            list(data_struct(contract).fields) + envelope + SOURCE_COLUMNS + INGEST_COLUMNS
            + _fields(("event_date", T.DateType(), False),
                      ("contract_version", T.IntegerType(), False),
                      ("written_at", T.TimestampType(), False))
        ),
        partition_by=("event_date",),
        key=contract.key,
        # Deletion vectors: a MERGE correcting a few readings of a day marks the old rows
        # instead of copying the rest of the day's file (no stored row copied; a batch over 30
        # days 38 s instead of 55 s: benchmarks/results/merge-spread.md). `compact` and
        # `forget` purge them.
        properties={"delta.enableChangeDataFeed": "true",
                    "delta.enableDeletionVectors": "true", **checkpoint_every(10)},
        description="Validated, deduplicated, upserted readings.",
    )


def gold_daily_device_rollups() -> TableSpec:
    return TableSpec(
        path="gold/daily_device_rollups",
        schema=T.StructType(_fields(
            ("device_id", T.StringType(), False),
            ("day", T.DateType(), False),
            ("site_id", T.StringType()),
            ("device_type", T.StringType()),
            ("samples", T.LongType(), False),
            ("energy_import_wh", T.DoubleType()),
            ("energy_export_wh", T.DoubleType()),
            ("min_power_w", T.DoubleType()),
            ("max_power_w", T.DoubleType()),
            ("avg_power_w", T.DoubleType()),
            ("min_soc_pct", T.DoubleType()),
            ("max_soc_pct", T.DoubleType()),
            ("silver_version", T.LongType(), False),
            ("run_id", T.StringType(), False),
            ("computed_at", T.TimestampType(), False),
        )),
        partition_by=("day",),
        key=("device_id", "day"),
        description="Per device per UTC day.",
    )


def batch_log() -> TableSpec:
    """One row per micro-batch or backfill load: the progress Dagster and operators watch."""
    return TableSpec(
        path="_gridlake/batches",
        schema=T.StructType(_fields(
            ("run_id", T.StringType(), False),
            ("batch_id", T.LongType(), False),
            ("kind", T.StringType(), False),
            ("source", T.StringType()),
            ("started_at", T.TimestampType(), False),
            ("finished_at", T.TimestampType(), False),
            ("records_read", T.LongType(), False),
            ("upserted", T.LongType(), False),
            ("duplicates_or_stale", T.LongType(), False),
            ("conflicts", T.LongType(), False),
            ("quarantined", T.LongType(), False),
            ("event_dates", T.ArrayType(T.DateType(), False), False),
            ("bronze_version", T.LongType()),
            ("silver_version", T.LongType()),
            ("quarantine_version", T.LongType()),
            ("contract_version", T.IntegerType(), False),
        )),
        key=("run_id", "batch_id"),
        properties=checkpoint_every(19),
        description="Progress of every write to the lake: micro-batches and loads.",
    )


def loaded_files() -> TableSpec:
    """One row per late-report file loaded, by content: a file seen again is skipped."""
    return TableSpec(
        path="_gridlake/loaded_files",
        schema=T.StructType(_fields(
            ("sha256", T.StringType(), False),
            ("path", T.StringType(), False),
            ("size", T.LongType(), False),
            ("loaded_at", T.TimestampType(), False),
            ("run_id", T.StringType(), False),
            ("records", T.LongType(), False),
        )),
        key=("sha256",),
        description="Late-report files loaded by backfill, identified by the SHA-256 of their bytes.",
    )


def reference_sites() -> TableSpec:
    """The site registry: where each site is, and the time zone its local days follow."""
    return TableSpec(
        path="reference/sites",
        schema=T.StructType(_fields(
            ("site_id", T.StringType(), False),
            ("timezone", T.StringType(), False),
            ("latitude", T.DoubleType()),
            ("longitude", T.DoubleType()),
            ("source_file", T.StringType()),
            ("loaded_at", T.TimestampType(), False),
        )),
        key=("site_id",),
        description="Site registry (IANA time zone per site), replaced whole on each load.",
    )


def site_energy_columns(contract: Contract = CURRENT) -> tuple[tuple[str, str, str], ...]:
    """(device_type, import column, export column) for each device type the contract allows."""
    types = contract.field("device_type").allowed or ()
    return tuple((t, f"{t}_energy_import_wh", f"{t}_energy_export_wh") for t in types)


def gold_daily_site_rollups(contract: Contract = CURRENT) -> TableSpec:
    per_type = [T.StructField(name, T.DoubleType())
                for _, imp, exp in site_energy_columns(contract) for name in (imp, exp)]
    return TableSpec(
        path="gold/daily_site_rollups",
        schema=T.StructType(_fields(
            ("site_id", T.StringType(), False),
            ("local_day", T.DateType(), False),
            ("timezone", T.StringType(), False),
            ("local_day_hours", T.DoubleType(), False),
            ("devices", T.LongType(), False),
            ("samples", T.LongType(), False),
            ("energy_import_wh", T.DoubleType()),
            ("energy_export_wh", T.DoubleType()),
        ) + per_type + _fields(
            ("silver_version", T.LongType(), False),
            ("run_id", T.StringType(), False),
            ("computed_at", T.TimestampType(), False),
        )),
        partition_by=("local_day",),
        key=("site_id", "local_day"),
        description="Per site per local calendar day (the site's time zone; 23/24/25 hours).",
    )


def rollup_log() -> TableSpec:
    """One row per rollup run; the highest `silver_version` of a `changed` run is the cursor."""
    return TableSpec(
        path="_gridlake/rollups",
        schema=T.StructType(_fields(
            ("run_id", T.StringType(), False),
            ("mode", T.StringType(), False),
            ("changes_from_version", T.LongType()),
            ("silver_version", T.LongType(), False),
            ("days", T.ArrayType(T.DateType(), False), False),
            ("local_days", T.ArrayType(T.DateType(), False), False),
            ("device_rollups_version", T.LongType()),
            ("site_rollups_version", T.LongType()),
            ("started_at", T.TimestampType(), False),
            ("finished_at", T.TimestampType(), False),
        )),
        key=("run_id",),
        description="Rollup runs: which silver version and days each one computed.",
    )


# Why a record won or lost against the row it met: one per valid record a write handled.
DECISIONS = ("inserted", "higher_seq", "duplicate", "stale",
             "producer_conflict_won", "producer_conflict_lost")


def decision_log(contract: Contract = CURRENT) -> TableSpec:
    """One row per valid record a silver write handled: did it win, against what, and why."""
    types = {f.name: f.dataType for f in data_struct(contract).fields}
    return TableSpec(
        path="_gridlake/decisions",
        schema=T.StructType([T.StructField(k, types[k], False) for k in contract.key] + _fields(
            ("event_date", T.DateType(), False),
            ("record_id", T.StringType(), False),
            ("event_id", T.StringType()),
            (contract.order_by, types[contract.order_by]),
            ("decision", T.StringType(), False),
            ("won", T.BooleanType(), False),
            ("winner_record_id", T.StringType()),
            ("winner_event_id", T.StringType()),
            ("winner_" + contract.order_by, types[contract.order_by]),
            ("run_id", T.StringType(), False),
            ("batch_id", T.LongType(), False),
            ("contract_version", T.IntegerType(), False),
            ("silver_version_read", T.LongType()),
            ("silver_version_written", T.LongType()),
            ("decided_at", T.TimestampType(), False),
        )),
        partition_by=("event_date",),
        key=(*contract.key, "record_id", "run_id", "batch_id"),
        properties=checkpoint_every(13),
        description="Upsert decisions: which record won each key a write touched, and why.",
    )


def erasure_log() -> TableSpec:
    """Deletion certificates of `gridlake forget`: the only table that keeps an erased device id."""
    return TableSpec(
        path="_gridlake/erasures",
        schema=T.StructType(_fields(
            ("erasure_id", T.StringType(), False),
            ("device_id", T.StringType(), False),
            ("requested_at", T.TimestampType(), False),
            ("finished_at", T.TimestampType(), False),
            ("mode", T.StringType(), False),
            ("rows_removed", T.LongType(), False),
            ("files_removed", T.LongType(), False),
            ("pending_vacuum_after", T.TimestampType()),
            ("certificate", T.StringType(), False),
        )),
        key=("erasure_id",),
        description="Deletion certificates: what an erasure removed, where, and when.",
    )


def quality_results() -> TableSpec:
    """One row per expectation evaluated by a quality run: quality over time, queryable."""
    return TableSpec(
        path="_gridlake/quality_results",
        schema=T.StructType(_fields(
            ("run_id", T.StringType(), False),
            ("checked_at", T.TimestampType(), False),
            ("table", T.StringType(), False),
            ("table_version", T.LongType()),
            ("day", T.DateType()),
            ("expectation", T.StringType(), False),
            ("expectation_type", T.StringType(), False),
            ("severity", T.StringType(), False),
            ("success", T.BooleanType(), False),
            ("observed_value", T.StringType()),
            ("unexpected_count", T.LongType()),
            ("unexpected_examples", T.StringType()),
        )),
        key=("run_id", "table", "day", "expectation"),
        description="Data-quality results: every expectation of every `gridlake quality` run.",
    )


def micro_batch_tables(contract: Contract = CURRENT) -> tuple[TableSpec, ...]:
    """The tables one batch of the write path (`gridlake.ingest.write_batch` and
    `record_batch`) commits to, each under the batch's transaction id."""
    return (bronze_telemetry(), quarantine_telemetry(), silver_readings(contract),
            decision_log(contract), batch_log())


def core_tables(contract: Contract = CURRENT) -> tuple[TableSpec, ...]:
    return (bronze_telemetry(), quarantine_telemetry(), silver_readings(contract),
            gold_daily_device_rollups(), batch_log(), loaded_files(), reference_sites(),
            gold_daily_site_rollups(contract), rollup_log(), decision_log(contract),
            erasure_log(), quality_results())
