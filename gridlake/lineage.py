"""Lineage: where a gold number came from, and what a source range went on to change.

Backward, a gold row names the silver version and run it was computed from; each silver
reading carries its bronze record id and source coordinates (file and line, or Kafka topic,
partition and offset), its CloudEvents id and trace context, and the run and batch that wrote
it, whose kind and source the batch log knows. Forward, the records of a file or an offset
range lead to the silver readings they still provide and the gold days those fall on. The
decision log answers "why does silver hold this record?".

Results are plain dataclasses (`to_dict()` for JSON); the predicates are built from Column
expressions, so an id, a date or a path is only ever compared as a value.

Example:
    >>> day = trace_day(spark, lake, "D00042", dt.date(2026, 11, 20))      # doctest: +SKIP
    >>> [(r.source_file, r.source_line) for r in day.readings]             # doctest: +SKIP
    >>> impact = source_impact(spark, lake, parse_source("kafka:telemetry:0:100-250"))
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import asdict, dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.delta_io import read_at
from batch.rollups import daily_device_rollups
from gridlake.errors import BadArgumentError, GridlakeError
from gridlake.lake import Lake, file_uri, is_data_gone, missing_files, table_version, unreadable
from shared_schemas import CURRENT, Contract
from shared_schemas.tables import (
    batch_log,
    bronze_telemetry,
    decision_log,
    gold_daily_device_rollups,
    quarantine_telemetry,
    silver_readings,
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_KAFKA_RANGE = re.compile(r"^kafka:([A-Za-z0-9._-]+):(\d+):(\d+)-(\d+)$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_TIME_COLUMNS = ("ts", "ingest_time", "written_at", "decided_at", "computed_at")


class NoDataError(GridlakeError):
    """A lineage question about a device, day or reading the lake holds nothing for."""


# -- results -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceRange:
    """A source to trace forward: one file, or an inclusive offset range of a Kafka partition."""

    text: str
    files: tuple[str, ...] = ()
    topic: str | None = None
    partition: int | None = None
    first_offset: int | None = None
    last_offset: int | None = None

    def predicate(self) -> Column:
        """Rows (bronze, quarantine or silver: they share the source columns) from this source."""
        if self.topic is None:
            return F.col("source_file").isin(*[F.lit(f) for f in self.files])
        return ((F.col("source_kind") == F.lit("kafka"))
                & (F.col("kafka_topic") == F.lit(self.topic))
                & (F.col("kafka_partition") == F.lit(self.partition))
                & F.col("kafka_offset").between(F.lit(self.first_offset),
                                                F.lit(self.last_offset)))


@dataclass(frozen=True)
class ReadingLineage:
    """One silver reading traced to its bronze record, its source and the write that made it."""

    device_id: str
    ts: dt.datetime
    seq: int
    event_id: str | None
    traceparent: str | None
    trace_id: str | None
    record_id: str
    source_kind: str
    source_file: str | None
    source_line: int | None
    kafka_topic: str | None
    kafka_partition: int | None
    kafka_offset: int | None
    run_id: str
    batch_id: int
    batch_kind: str | None
    batch_source: str | None
    ingest_time: dt.datetime
    written_at: dt.datetime
    contract_version: int
    in_bronze: bool
    payload_bytes: int | None

    @property
    def coordinates(self) -> str:
        """`file:line` or `kafka topic/partition@offset`: where the record was read."""
        if self.source_kind == "kafka":
            return f"kafka {self.kafka_topic}/{self.kafka_partition}@{self.kafka_offset}"
        line = f":{self.source_line}" if self.source_line is not None else ""
        return f"{self.source_file}{line}"


@dataclass
class DayLineage:
    """A device's day (or one reading of it): the gold row, and every reading behind it."""

    device_id: str
    day: dt.date
    ts: dt.datetime | None = None
    gold: dict | None = None
    silver_version: int | None = None       # the version the readings were read at
    silver_latest_version: int | None = None
    readings: list[ReadingLineage] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    decision_counts: dict[str, int] = field(default_factory=dict)
    # When the version the gold row was computed from can no longer be read (its files were
    # vacuumed), the readings are those of the latest version: that version, and whether they
    # give the gold row's numbers again.
    silver_version_gone: int | None = None
    gold_matches_readings: bool | None = None

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass
class Impact:
    """What the records of one source produced or changed, down to the gold days."""

    source: str
    bronze_records: int = 0
    quarantined: int = 0
    quarantine_by_status: dict[str, int] = field(default_factory=dict)
    readings: list[dict] = field(default_factory=list)       # silver rows it still provides
    won_then_superseded: int = 0                               # won once, replaced since
    days: list[dict] = field(default_factory=list)            # (device_id, day) and its gold row

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return value


# -- pure helpers -------------------------------------------------------------------------------

def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`), if well formed."""
    match = _TRACEPARENT.match((traceparent or "").strip().lower())
    return match.group(1) if match else None


def same_numbers(computed: dict, gold: dict, rel: float = 1e-9) -> bool:
    """Whether a device's day rolled up again (`computed`, the rollup's columns) gives the
    gold row's values: numbers to `rel` (sums in another order; 1e-9 near zero), the rest
    exactly.

    Example:
        >>> same_numbers({"samples": 2, "avg_power_w": 0.1 + 0.2}, {"samples": 2, "avg_power_w": 0.3})
        True
    """
    def same(a, b) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return (a is not None and b is not None
                    and math.isclose(a, b, rel_tol=rel, abs_tol=1e-9))
        return a == b

    return all(same(value, gold.get(name)) for name, value in computed.items())


def parse_timestamp(text: str) -> dt.datetime:
    """An RFC 3339 / ISO 8601 timestamp as an aware UTC datetime (no offset means UTC)."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise BadArgumentError(
            f"{text!r} is not a timestamp; expected e.g. 2026-11-20T10:15:00Z") from None
    return (value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value).astimezone(dt.UTC)


def parse_source(text: str, spark=None) -> SourceRange:
    """`kafka:TOPIC:PARTITION:FROM-TO` (offsets included) or a file path, as a SourceRange.

    A file is matched under every name the readers give it: as typed, absolute, with its
    symbolic links resolved (as the stream records a landing folder), and as `file_lines`
    spells it (the file URI without `file:`), so a removed file is still found.
    """
    text = (text or "").strip()
    if text.startswith("kafka:"):
        match = _KAFKA_RANGE.match(text)
        if not match:
            raise BadArgumentError(
                f"{text!r} is not a Kafka range; expected kafka:TOPIC:PARTITION:FROM-TO")
        topic, partition, first, last = match.groups()
        if int(first) > int(last):
            raise BadArgumentError(f"the Kafka range {text!r} starts after it ends ({first} > {last})")
        return SourceRange(text, topic=topic, partition=int(partition),
                           first_offset=int(first), last_offset=int(last))
    if not text:
        raise BadArgumentError("the source is empty; give a file path or kafka:TOPIC:PARTITION:FROM-TO")
    names = [text]
    local = re.sub(r"^file:(//)?", "", text)
    if "://" not in local:
        names += [os.path.abspath(local), os.path.realpath(local)]
        if spark is not None:
            names.append(re.sub(r"^file:(//)?", "", file_uri(spark, os.path.abspath(local))))
    return SourceRange(text, files=tuple(dict.fromkeys(names)))


def with_utc_micros(*names: str):
    """Timestamps as microseconds since the epoch, so collecting them ignores the local zone."""

    def transform(df: DataFrame) -> DataFrame:
        for name in names:
            if name in df.columns:
                df = df.withColumn(name, F.unix_micros(name))
        return df

    return transform


def _row(row) -> dict:
    out = row.asDict()
    for name in _TIME_COLUMNS:
        if isinstance(out.get(name), int):
            out[name] = _EPOCH + dt.timedelta(microseconds=out[name])
    return out


def _micros(value: dt.datetime) -> int:
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


# -- edge functions: reads ------------------------------------------------------------------------

def _read(spark, lake: Lake, spec, version: int | None = None) -> DataFrame:
    return read_at(spark, lake.path(spec), version)


def _collect(df: DataFrame) -> list[dict]:
    return [_row(r) for r in df.transform(with_utc_micros(*_TIME_COLUMNS)).collect()]


def trace_readings(spark, lake: Lake, silver: DataFrame) -> list[ReadingLineage]:
    """Each silver row of `silver` joined to its bronze record and to the batch that wrote it."""
    rows = _collect(silver)
    if not rows:
        return []
    ids = sorted({r["record_id"] for r in rows})
    days = sorted({r["ingest_date"] for r in rows})
    runs = sorted({r["run_id"] for r in rows})
    bronze = {(r["record_id"], r["run_id"], r["batch_id"]): r["payload_bytes"] for r in (
        _read(spark, lake, bronze_telemetry())
        .where(F.col("ingest_date").isin(*[F.lit(d) for d in days])
               & F.col("record_id").isin(*[F.lit(i) for i in ids]))
        .select("record_id", "run_id", "batch_id",
                F.length("payload").alias("payload_bytes")).collect())}
    batches = {(r["run_id"], r["batch_id"]): r for r in (
        _read(spark, lake, batch_log())
        .where(F.col("run_id").isin(*[F.lit(r) for r in runs]))
        .select("run_id", "batch_id", "kind", "source").collect())}
    out = []
    for r in sorted(rows, key=lambda r: (r["ts"], r["device_id"])):
        key = (r["record_id"], r["run_id"], r["batch_id"])
        batch = batches.get((r["run_id"], r["batch_id"]))
        out.append(ReadingLineage(
            device_id=r["device_id"], ts=r["ts"], seq=r["seq"], event_id=r["event_id"],
            traceparent=r["traceparent"], trace_id=trace_id(r["traceparent"]),
            record_id=r["record_id"], source_kind=r["source_kind"],
            source_file=r["source_file"], source_line=r["source_line"],
            kafka_topic=r["kafka_topic"], kafka_partition=r["kafka_partition"],
            kafka_offset=r["kafka_offset"], run_id=r["run_id"], batch_id=r["batch_id"],
            batch_kind=batch["kind"] if batch else None,
            batch_source=batch["source"] if batch else None,
            ingest_time=r["ingest_time"], written_at=r["written_at"],
            contract_version=r["contract_version"], in_bronze=key in bronze,
            payload_bytes=bronze.get(key)))
    return out


def decisions_for(spark, lake: Lake, device_id: str, day: dt.date,
                  ts: dt.datetime | None = None, contract: Contract = CURRENT) -> DataFrame:
    """The decision log's rows for a device's day (or one reading), oldest first."""
    where = (F.col("event_date") == F.lit(day)) & (F.col("device_id") == F.lit(device_id))
    if ts is not None:
        where = where & (F.col("ts") == F.timestamp_micros(F.lit(_micros(ts))))
    return _read(spark, lake, decision_log(contract)).where(where)


def trace_day(spark, lake: Lake, device_id: str, day: dt.date | None = None,
              ts: dt.datetime | None = None, contract: Contract = CURRENT) -> DayLineage:
    """Trace a device's gold row for a UTC day (or one reading at `ts`) back to its sources.

    The readings are read from silver *at the version the gold row was computed from*, so they
    are exactly the rows that made its numbers; without a gold row (rollups not run yet), at
    the latest version. When that version's files were vacuumed, the latest readings are read
    instead: `silver_version_gone` names the lost version and `gold_matches_readings` says
    whether the latest readings give the gold row's numbers again.

    Parameters:
        device_id: the device, compared as a value (never pasted into SQL).
        day: the UTC day; with `ts` it may be omitted (the reading's day).
        ts: one reading's time (aware, or naive UTC): trace that reading and its decisions.
    Raises NoDataError when neither gold nor silver holds anything for the question.
    """
    if ts is not None:
        ts = ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)
        if day is not None and ts.date() != day:
            raise BadArgumentError(f"the reading at {ts.isoformat()} is not on {day}")
        day = ts.date()
    if day is None:
        raise BadArgumentError("give --day DATE or --ts TIMESTAMP")
    device = F.col("device_id") == F.lit(device_id)
    result = DayLineage(device_id=device_id, day=day, ts=ts)
    silver_path = lake.path(silver_readings(contract))
    result.silver_latest_version = table_version(spark, silver_path)

    gold = _collect(_read(spark, lake, gold_daily_device_rollups())
                    .where(device & (F.col("day") == F.lit(day))))
    if gold:
        result.gold = gold[0]
        result.silver_version = gold[0]["silver_version"]
    else:
        result.silver_version = result.silver_latest_version

    of_day = device & (F.col("event_date") == F.lit(day))
    where = of_day
    if ts is not None:
        where = where & (F.col("ts") == F.timestamp_micros(F.lit(_micros(ts))))

    def silver_at(version: int | None) -> DataFrame:  # Delta resolves a version at load
        return _read(spark, lake, silver_readings(contract), version)

    gone = result.silver_version
    try:
        # Vacuumed files are looked for first: a read that meets one fails in Spark's tasks,
        # which print their errors on stderr before the answer comes.
        at_gold = silver_at(gone)
        vacuumed = (result.gold is not None and gone != result.silver_latest_version
                    and bool(missing_files(at_gold.where(of_day))))
        if not vacuumed:
            result.readings = trace_readings(spark, lake, at_gold.where(where))
    except Exception as error:
        if result.gold is None or not is_data_gone(error) or not unreadable(
                lambda: silver_at(gone).where(of_day)):
            raise
        vacuumed = True
    if vacuumed:
        # Vacuumed (after a compaction, an erasure): the latest readings, checked against gold.
        result.silver_version_gone = gone
        result.silver_version = result.silver_latest_version
        silver = silver_at(result.silver_version)
        result.readings = trace_readings(spark, lake, silver.where(where))
        again = silver.where(of_day).transform(daily_device_rollups()).drop("device_id", "day")
        rows = [r.asDict() for r in again.collect()]
        result.gold_matches_readings = len(rows) == 1 and same_numbers(rows[0], result.gold)

    decisions = decisions_for(spark, lake, device_id, day, ts, contract)
    if ts is not None:
        result.decisions = sorted(_collect(decisions),
                                  key=lambda d: (d["decided_at"], d["batch_id"], d["record_id"]))
    else:
        result.decision_counts = {r["decision"]: r["n"] for r in
                                  decisions.groupBy("decision").agg(F.count("*").alias("n"))
                                  .collect()}
    if ts is not None and not result.readings and not result.decisions:
        raise NoDataError(
            f"no data for device {device_id!r} at {ts.isoformat().replace('+00:00', 'Z')}: "
            "neither silver/readings nor the decision log holds a reading with that key")
    if ts is None and result.gold is None and not result.readings:
        raise NoDataError(
            f"no data for device {device_id!r} on {day}: neither gold/daily_device_rollups "
            "nor silver/readings holds a row for it")
    return result


def source_impact(spark, lake: Lake, source: SourceRange,
                  contract: Contract = CURRENT) -> Impact:
    """What the records of `source` produced or changed: silver readings and gold days.

    `readings` are the silver rows whose record came from the source (they are what the
    source provides today); `days` are the (device, day) gold rows they fall on, plus days
    where the decision log says a record of the source won and was replaced since. Bronze and
    quarantine counts tell how many records were read and how many failed validation.
    """
    where = source.predicate()
    result = Impact(source=source.text)
    result.bronze_records = _read(spark, lake, bronze_telemetry()).where(where).count()
    if not result.bronze_records:
        # Every record read is in bronze: none means a mistyped path or range, not "no effect".
        raise NoDataError(f"bronze holds no record read from {source.text!r}"
                          + (f" (looked for {', '.join(source.files)})" if source.files else ""))
    statuses = (_read(spark, lake, quarantine_telemetry()).where(where)
                .groupBy("status").agg(F.countDistinct("record_id").alias("n")).collect())
    result.quarantine_by_status = {r["status"]: r["n"] for r in statuses}
    result.quarantined = (_read(spark, lake, quarantine_telemetry()).where(where)
                          .select("record_id").distinct().count())
    key = list(contract.key)
    readings = _collect(_read(spark, lake, silver_readings(contract)).where(where).select(
        *key, "event_date", contract.order_by, "event_id", "record_id", "source_file",
        "source_line", "kafka_topic", "kafka_partition", "kafka_offset", "run_id", "batch_id"))
    result.readings = sorted(readings, key=lambda r: tuple(r[k] for k in key))
    days = {(r["device_id"], r["event_date"]) for r in readings}

    current = {r["record_id"] for r in readings}
    # The log keeps record ids, not coordinates: the source's bronze records give the ids.
    ids = _read(spark, lake, bronze_telemetry()).where(where).select("record_id")
    won = _collect(_read(spark, lake, decision_log(contract)).where(F.col("won"))
                   .join(ids, "record_id", "left_semi")
                   .select("record_id", "device_id", "event_date").distinct())
    superseded = [w for w in won if w["record_id"] not in current]
    result.won_then_superseded = len({w["record_id"] for w in superseded})
    days |= {(w["device_id"], w["event_date"]) for w in superseded}
    result.days = _gold_days(spark, lake, sorted(days))
    return result


def _gold_days(spark, lake: Lake, days: list[tuple[str, dt.date]]) -> list[dict]:
    if not days:
        return []
    wanted = spark.createDataFrame(days, "device_id string, day date")
    gold = {(r["device_id"], r["day"]): r for r in _collect(
        _read(spark, lake, gold_daily_device_rollups())
        .where(F.col("day").isin(*[F.lit(d) for d in sorted({d for _, d in days})]))
        .join(wanted, ["device_id", "day"], "left_semi")
        .select("device_id", "day", "samples", "energy_import_wh", "energy_export_wh",
                "silver_version", "run_id"))}
    return [{"device_id": device, "day": day, "in_gold": (device, day) in gold,
             "gold": gold.get((device, day))} for device, day in days]
