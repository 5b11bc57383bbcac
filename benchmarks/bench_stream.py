"""`make bench-stream`: the streaming write path's throughput against Spark's own ceiling.

One run, one generated fleet (cached under `benchmarks/.data`, keyed by its options), one
SparkSession (`local[2]`, a 6g driver, UI off), measured side by side:

- (a) **ceiling**: the landing files read exactly as `FileSource` reads them (`read_files`:
  whole files split into lines by `file_lines`) and appended to a plain Delta table;
- (a') the same ceiling as a stream (the same micro-batches, a plain Delta sink), to separate the
  cost of micro-batching from the cost of gridlake's work;
- (b) **pipeline**: the real stream (`run_stream`, available-now, a fixed max files per trigger):
  bronze + validation + quarantine + silver MERGE + batch log;
- (b') **decision log cost**: the same pipeline with `GRIDLAKE_DECISION_LOG=off`, interleaved
  with (b) so both see the same load; (b) / (b') is what the decision log costs the stream;
- (c) **MERGE scaling**: one 100k-event micro-batch through `write_batch` (fresh `WriteContext`)
  into a silver table holding 1M rows and one holding 10M rows (synthesized over ~90 event
  dates, appended directly); the batch touches one day (10% corrections, 90% new readings).

Targets (issue 3): (b) >= 50% of (a); MERGE at 10M / MERGE at 1M <= 1.3. Every timed step of
(b) and (c) is also broken down (wall time and Spark jobs per write-path step, the streaming
engine's own durations, Delta's MERGE metrics), so a missed target says where the time went.
Results go to `benchmarks/results/stream.json` and `stream.md`.

Example:
    $ make bench-stream
    $ .venv/bin/python -m benchmarks.bench_stream --devices 40 --stream-files 8 \\
          --silver-rows 20000,200000 --merge-events 4000 --out /tmp/bench   # a smoke run

Parameters: see `--help`; the defaults are the issue's benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"
RESULTS_DIR = BENCH_DIR / "results"
STREAM_TARGET = 0.5  # (b) / (a) at least
MERGE_TARGET = 1.3  # MERGE(10M) / MERGE(1M) at most
DRIVER_MEMORY = "6g"
MASTER = "local[2]"
_started = time.monotonic()


def say(text: str) -> None:
    """One progress line, with the minutes:seconds since the benchmark started."""
    elapsed = int(time.monotonic() - _started)
    print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}", flush=True)


# -- options ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchOptions:
    devices: int = 1750
    days: int = 2
    interval_minutes: int = 5
    stream_files: int = 40
    seed: int = 7
    max_files_per_trigger: int = 10
    ceiling_repeats: int = 2
    pipeline_repeats: int = 1
    decision_log_off: bool = True
    stream_ceiling: bool = False
    validation_profile: bool = False
    tuned_snapshot_partitions: int | None = None
    silver_rows: tuple[int, ...] = (1_000_000, 10_000_000)
    silver_days: int = 90
    merge_events: int = 100_000
    merge_corrections: float = 0.1
    merge_devices: int = 1750
    merge_repeats: int = 2
    merge_day: dt.date = dt.date(2026, 10, 29)


def fleet_options(options: BenchOptions):
    """The generator's options: everything in stream/ (no late reports), default anomalies."""
    from gridlake.generator import GenerateOptions

    return GenerateOptions(devices=options.devices, days=options.days,
                           interval_minutes=options.interval_minutes, seed=options.seed,
                           stream_files=options.stream_files, late_devices=0.0)


def silver_rows_arg(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part.replace("_", "")) for part in text.split(","))
    if len(sizes) < 2 or sizes[0] <= 0 or list(sizes) != sorted(set(sizes)):
        raise argparse.ArgumentTypeError(
            f"--silver-rows is {text!r}; it needs two or more sizes, smallest first "
            "(e.g. 1000000,10000000)")
    return sizes


def parse_args(argv: list[str] | None) -> tuple[BenchOptions, Path]:
    d = BenchOptions()
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_stream",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=d.devices)
    p.add_argument("--days", type=int, default=d.days)
    p.add_argument("--interval-minutes", type=int, default=d.interval_minutes)
    p.add_argument("--stream-files", type=int, default=d.stream_files)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-files-per-trigger", type=int, default=d.max_files_per_trigger)
    p.add_argument("--ceiling-repeats", type=int, default=d.ceiling_repeats)
    p.add_argument("--pipeline-repeats", type=int, default=d.pipeline_repeats)
    p.add_argument("--no-decision-log-off", dest="decision_log_off", action="store_false",
                   help="skip (b'), the pipeline without the decision log")
    p.add_argument("--stream-ceiling", action="store_true",
                   help="also run (a'): the ceiling as a stream with the same micro-batches")
    p.add_argument("--validation-profile", action="store_true",
                   help="also split read / validate / dedup cost (batch passes, no-op sink)")
    p.add_argument("--tuned-snapshot-partitions", type=int, metavar="N",
                   help="also run (b) with spark.databricks.delta.snapshotPartitions=N")
    p.add_argument("--silver-rows", type=silver_rows_arg, default=d.silver_rows,
                   metavar="SMALL,...,LARGE")
    p.add_argument("--silver-days", type=int, default=d.silver_days)
    p.add_argument("--merge-events", type=int, default=d.merge_events)
    p.add_argument("--merge-repeats", type=int, default=d.merge_repeats)
    p.add_argument("--merge-devices", type=int, default=d.merge_devices)
    p.add_argument("--skip-merge", action="store_true", help="skip (c)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR,
                   help="folder for stream.json and stream.md (default %(default)s)")
    a = p.parse_args(argv)
    options = replace(
        d, devices=a.devices, days=a.days, interval_minutes=a.interval_minutes,
        stream_files=a.stream_files, seed=a.seed, max_files_per_trigger=a.max_files_per_trigger,
        ceiling_repeats=a.ceiling_repeats, pipeline_repeats=a.pipeline_repeats,
        stream_ceiling=a.stream_ceiling, validation_profile=a.validation_profile,
        tuned_snapshot_partitions=a.tuned_snapshot_partitions,
        silver_rows=() if a.skip_merge else a.silver_rows, silver_days=a.silver_days,
        merge_events=a.merge_events, merge_repeats=a.merge_repeats,
        merge_devices=a.merge_devices)
    return options, a.out


# -- the data: generated once, reused while the options are the same -----------------------------

def cached_fleet(generate_options, label: str) -> Path:
    """The generated fleet for these options under benchmarks/.data (generated if missing)."""
    from gridlake.generator import write_fleet

    text = json.dumps(asdict(generate_options), default=str, sort_keys=True)
    folder = DATA_DIR / f"fleet-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if (folder / "manifest.json").is_file() and (folder / "options.json").is_file():
        say(f"{label}: reusing {folder.relative_to(BENCH_DIR.parent)}")
        return folder
    say(f"{label}: generating {generate_options.devices} devices x {generate_options.days} days "
        f"into {folder.relative_to(BENCH_DIR.parent)} (once)")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_fleet(generate_options, partial, progress=False)
    (partial / "options.json").write_text(text + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def count_lines(folder: Path) -> int:
    """Non-blank lines in the landing files: the records the stream reads."""
    total = 0
    for path in sorted(folder.glob("*.jsonl")):
        with path.open("rb") as f:
            total += sum(1 for line in f if line.strip())
    return total


# -- instrumentation ------------------------------------------------------------------------------

def jobs_started(spark) -> int:
    """How many Spark jobs this SparkContext has started so far (the scheduler's next job id)."""
    try:
        return int(spark.sparkContext._jsc.sc().dagScheduler().nextJobId())
    except Exception:  # not reachable on some deployments: counts become -1, times stay
        return -1


SNAPSHOT_JOB = "Compute snapshot"  # Delta's description of a state-reconstruction job
_STEP_FIELDS = ("seconds", "jobs", "tasks", "job_seconds", "snapshot_jobs", "snapshot_seconds")


class StepRecorder:
    """Wall time and Spark jobs of each step (the write path's unless other steps are given),
    by wrapping the module functions.

    Only module attributes are swapped for timing wrappers (the code itself is untouched); a
    wrapper costs two clock reads and two py4j calls. The jobs a step started are looked up
    afterwards in Spark's status store: their tasks, their time, and how many of them were
    Delta snapshot reconstructions.
    """

    def __init__(self, spark):
        self.spark = spark
        self.events: list[dict] = []
        self._stack: list[list[dict]] = []
        self._jobs: dict[int, dict] = {}

    def _wrap(self, fn: Callable, name_of: Callable[..., str]) -> Callable:
        from gridlake.ingest import WriteContext

        def wrapper(*args, **kwargs):
            ctx = next((a for a in (*args, *kwargs.values()) if isinstance(a, WriteContext)),
                       None)
            self._stack.append([])
            jobs0, t0 = jobs_started(self.spark), time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                event = {
                    "run_id": ctx.run_id if ctx else None,
                    "batch_id": ctx.batch_id if ctx else None,
                    "step": name_of(*args, **kwargs), "depth": len(self._stack) - 1,
                    "seconds": time.monotonic() - t0,
                    "job_ids": [jobs0, jobs_started(self.spark)],
                    "children": self._stack.pop(),
                }
                self.events.append(event)
                if self._stack:
                    self._stack[-1].append(event)

        return wrapper

    @staticmethod
    def write_path_steps() -> list[tuple[object, str, Callable[..., str]]]:
        """The write path's steps: (module, function name, step name of a call)."""
        import gridlake.ingest as ingest
        import streaming.query as query

        return [
            (query, "write_batch", lambda *a, **k: "write_batch"),
            (ingest, "write_batch", lambda *a, **k: "write_batch"),
            (ingest, "_committed_bronze", lambda *a, **k: "replay check (_committed_bronze)"),
            (ingest, "_append", lambda df, path, ctx, what, *_, **__: f"{what} append"),
            (ingest, "upsert_from_bronze", lambda *a, **k: "upsert_from_bronze"),
            (ingest, "merge_into_silver", lambda *a, **k: "silver MERGE (merge_into_silver)"),
            (ingest, "log_decisions", lambda *a, **k: "decision log (log_decisions)"),
            (query, "record_batch", lambda *a, **k: "record_batch"),
            (ingest, "table_version", lambda *a, **k: "version lookup (table_version)"),
            (ingest, "_latest_version", lambda *a, **k: "version lookup (_latest_version)"),
        ]

    @contextlib.contextmanager
    def active(self, steps: list[tuple[object, str, Callable[..., str]]] | None = None
               ) -> Iterator[StepRecorder]:
        """Time `steps` (default: the write path's) while the block runs."""
        patches = self.write_path_steps() if steps is None else steps
        # The code changes; a function it no longer has is simply not timed.
        patches = [p for p in patches if hasattr(p[0], p[1])]
        originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
        try:
            for module, name, name_of in patches:
                setattr(module, name, self._wrap(getattr(module, name), name_of))
            yield self
        finally:
            for module, name, original in originals:
                setattr(module, name, original)

    def _job(self, job_id: int) -> dict:
        if job_id not in self._jobs:
            info = {"tasks": 0, "seconds": 0.0, "snapshot": False}
            try:
                j = self.spark.sparkContext._jsc.sc().statusStore().job(job_id)
                done = j.completionTime().isDefined() and j.submissionTime().isDefined()
                info = {
                    "tasks": int(j.numTasks()),
                    "seconds": (j.completionTime().get().getTime()
                                - j.submissionTime().get().getTime()) / 1000 if done else 0.0,
                    "snapshot": j.description().isDefined()
                    and SNAPSHOT_JOB in j.description().get(),
                }
            except Exception:  # evicted from the status store, or not reachable
                pass
            self._jobs[job_id] = info
        return self._jobs[job_id]

    def _metrics(self, event: dict) -> dict:
        first, last = event["job_ids"]
        jobs = [self._job(i) for i in range(first, last)] if first >= 0 else []
        return {
            "seconds": event["seconds"], "jobs": len(jobs),
            "tasks": sum(j["tasks"] for j in jobs),
            "job_seconds": sum(j["seconds"] for j in jobs),
            "snapshot_jobs": sum(j["snapshot"] for j in jobs),
            "snapshot_seconds": sum(j["seconds"] for j in jobs if j["snapshot"]),
        }

    def totals(self) -> dict[str, dict]:
        """Per step, every recorded call's metrics summed (and `calls`)."""
        out: dict[str, dict] = {}
        for e in self.events:
            _add_call(out, e["step"], self._metrics(e))
        return out

    def batches(self, run_id: str) -> dict[int, dict[str, dict]]:
        """Per batch id: step -> metrics, inclusive (`step`) and less its timed sub-steps
        (`step: own`, e.g. upsert_from_bronze's own = validation, counts and planning)."""
        out: dict[int, dict[str, dict]] = defaultdict(dict)
        for e in self.events:
            if e["run_id"] != run_id or e["batch_id"] is None:
                continue
            metrics = self._metrics(e)
            _add_call(out[e["batch_id"]], e["step"], metrics)
            if e["children"]:
                children = [self._metrics(c) for c in e["children"]]
                _add_call(out[e["batch_id"]], f"{e['step']}: own", {
                    k: metrics[k] - sum(c[k] for c in children) for k in _STEP_FIELDS})
        return dict(out)


def _add_call(steps: dict[str, dict], name: str, metrics: dict) -> None:
    """Add one call's metrics to the step `name` of `steps` (created at zero)."""
    step = steps.setdefault(name, dict.fromkeys(_STEP_FIELDS, 0) | {"calls": 0})
    for k in _STEP_FIELDS:
        step[k] += metrics[k]
    step["calls"] += 1


def progress_listener(spark) -> tuple[list[dict], Callable[[], None]]:
    """Collect every streaming query progress (the engine's own per-batch durations)."""
    from pyspark.sql.streaming import StreamingQueryListener

    seen: list[dict] = []

    class Listener(StreamingQueryListener):
        def onQueryStarted(self, event):  # noqa: N802 - pyspark's names
            pass

        def onQueryProgress(self, event):  # noqa: N802
            p = event.progress
            seen.append({"batch_id": p.batchId, "rows": p.numInputRows,
                         "duration_ms": dict(p.durationMs)})

        def onQueryIdle(self, event):  # noqa: N802
            pass

        def onQueryTerminated(self, event):  # noqa: N802
            pass

    listener = Listener()
    spark.streams.addListener(listener)
    return seen, lambda: spark.streams.removeListener(listener)


def delta_versions(spark, path: str) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).history(1).select("version").first()[0]


def merge_metrics(spark, path: str, limit: int | None = None) -> list[dict]:
    """Delta's own metrics of the MERGE commits in a table's history, oldest first."""
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, path).history(limit) if limit else \
        DeltaTable.forPath(spark, path).history()
    rows = history.where("operation = 'MERGE'").orderBy("version").collect()
    keep = ("numSourceRows", "numTargetRowsInserted", "numTargetRowsUpdated",
            "numTargetRowsCopied", "numTargetFilesAdded", "numTargetFilesRemoved",
            "numTargetChangeFilesAdded", "numTargetBytesAdded", "numTargetBytesRemoved",
            "executionTimeMs", "scanTimeMs", "rewriteTimeMs", "materializeSourceTimeMs")
    return [{"version": r["version"], **{k: int(r["operationMetrics"][k])
                                        for k in keep if k in r["operationMetrics"]}}
            for r in rows]


# -- the measurements --------------------------------------------------------------------------

def _landing_files(spark, folder: Path):
    """The landing folder as FileSource reads it, as a batch (`read_files`)."""
    from streaming.sources import read_files

    return read_files(spark, [str(folder)])


def run_ceiling(spark, landing: Path, work: Path, events: int) -> dict:
    """(a): read + split the landing files, append them to a new plain Delta table."""
    table = work / f"ceiling-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    _landing_files(spark, landing).write.format("delta").mode("append").save(str(table))
    seconds = time.monotonic() - t0
    written = spark.read.format("delta").load(str(table)).count()
    if written != events:
        raise RuntimeError(f"the ceiling wrote {written} rows; the landing files hold {events}")
    shutil.rmtree(table)
    return {"seconds": seconds, "events": events}


def run_stream_ceiling(spark, landing: Path, work: Path, events: int,
                       max_files: int) -> dict:
    """(a'): FileSource's stream, the same micro-batches, into a plain Delta sink."""
    from streaming.sources import FileSource

    table, checkpoint = work / "ceiling-stream", work / "ceiling-stream-checkpoint"
    source = FileSource(str(landing.resolve()), max_files_per_trigger=max_files)
    progress, stop_listening = progress_listener(spark)
    t0 = time.monotonic()
    query = (source.read_stream(spark).writeStream.format("delta")
             .option("checkpointLocation", str(checkpoint))
             .trigger(availableNow=True).start(str(table)))
    query.awaitTermination()
    seconds = time.monotonic() - t0
    time.sleep(1.0)  # listener events arrive asynchronously
    stop_listening()
    written = spark.read.format("delta").load(str(table)).count()
    if written != events:
        raise RuntimeError(f"the stream ceiling wrote {written} rows; the files hold {events}")
    shutil.rmtree(table)
    shutil.rmtree(checkpoint)
    return {"seconds": seconds, "events": events, "batches": len(progress),
            "progress": progress}


def run_pipeline(spark, landing: Path, work: Path, events: int, max_files: int,
                 recorder: StepRecorder) -> dict:
    """(b): the real stream (available-now) into a new lake; checked, then broken down."""
    from pyspark.sql import functions as F

    from gridlake.lake import open_lake
    from shared_schemas.tables import (
        batch_log,
        bronze_telemetry,
        decision_log,
        quarantine_telemetry,
        silver_readings,
    )
    from streaming.query import StreamOptions, run_stream
    from streaming.sources import FileSource

    root = work / f"lake-{uuid.uuid4().hex[:8]}"
    lake = open_lake(str(root), create=True, spark=spark)
    tables = {"bronze": bronze_telemetry(), "quarantine": quarantine_telemetry(),
              "silver": silver_readings(), "batch log": batch_log(),
              "decision log": decision_log()}
    before = {name: delta_versions(spark, lake.path(spec)) for name, spec in tables.items()}
    source = FileSource(str(landing.resolve()), max_files_per_trigger=max_files)
    lines: list[str] = []
    progress, stop_listening = progress_listener(spark)
    jobs0 = jobs_started(spark)
    t0 = time.monotonic()
    with recorder.active():
        run_stream(spark, lake, source, StreamOptions(available_now=True), report=lines.append)
    seconds = time.monotonic() - t0
    jobs = jobs_started(spark) - jobs0
    time.sleep(1.0)
    stop_listening()
    say(f"  pipeline: {seconds:.1f} s; " + "; ".join(line for line in lines
                                                      if line.startswith("batch "))[:400])
    run_id = json.loads(Path(lake.default_checkpoint(source.slug), "gridlake.json")
                        .read_text())["run_id"]
    commits = {name: delta_versions(spark, lake.path(spec)) - before[name]
               for name, spec in tables.items()}
    bronze = spark.read.format("delta").load(lake.path(tables["bronze"])).count()
    quarantined = spark.read.format("delta").load(lake.path(tables["quarantine"])).count()
    silver = spark.read.format("delta").load(lake.path(tables["silver"]))
    silver_rows = silver.count()
    silver_keys = silver.select("device_id", "ts").distinct().count()
    if bronze != events or silver_keys != silver_rows:
        raise RuntimeError(f"the pipeline is wrong: bronze {bronze} rows for {events} lines, "
                           f"silver {silver_rows} rows for {silver_keys} keys")
    result = {
        "seconds": seconds, "events": events, "run_id": run_id,
        "batches": len([line for line in lines if line.startswith("batch ")]),
        "batch_lines": [line for line in lines if line.startswith("batch ")],
        "spark_jobs": jobs, "delta_commits": commits,
        "bronze_rows": bronze, "quarantine_rows": quarantined, "silver_rows": silver_rows,
        "silver_dates": [str(d) for d in silver.select(F.min("event_date"),
                                                       F.max("event_date")).first()],
        "progress": progress,
        "steps": recorder.batches(run_id),
        "merges": merge_metrics(spark, lake.path(tables["silver"])),
    }
    shutil.rmtree(root)
    return result


def run_validation_profile(spark, landing: Path, events: int) -> dict:
    """Batch passes over all files into Spark's no-op sink: what each stage of the work costs.

    read: whole files split into lines; + validate: to_bronze + parse_and_validate + the
    batch's counts (what upsert_from_bronze computes); + dedup: the silver rows and
    latest_per_key's window (what the MERGE reads as its source).
    """
    from pyspark.sql import functions as F

    from gridlake.ingest import WriteContext, latest_per_key, silver_rows, to_bronze
    from shared_schemas import CURRENT
    from shared_schemas.spark import parse_and_validate

    ctx = WriteContext.now(run_id="bench-profile", batch_id=0, kind="bench", source="bench")
    raw = _landing_files(spark, landing)
    validated = raw.transform(to_bronze(ctx)).transform(parse_and_validate(CURRENT))
    passes = {
        "read + split (noop sink)": raw,
        "read + split + to_bronze + parse_and_validate (noop sink)": validated,
        "read + split + validate + silver_rows + latest_per_key (noop sink)": (
            validated.transform(silver_rows(CURRENT, ctx.ingest_time))
            .transform(latest_per_key(CURRENT.key, CURRENT.order_by))),
    }
    out = {}
    for name, df in passes.items():
        t0 = time.monotonic()
        df.write.format("noop").mode("overwrite").save()
        out[name] = {"seconds": time.monotonic() - t0, "events": events}
        say(f"  {name}: {out[name]['seconds']:.1f} s")
    t0 = time.monotonic()
    validated.agg(F.count(F.lit(1)), F.count(F.when(F.size("reasons") > 0, 1))).first()
    out["read + split + validate + counts agg"] = {"seconds": time.monotonic() - t0,
                                                    "events": events}
    say(f"  read + split + validate + counts agg: "
        f"{out['read + split + validate + counts agg']['seconds']:.1f} s")
    return out


# -- (c) MERGE scaling --------------------------------------------------------------------------

def silver_frame(spark, rows: int, days: int, first_day: dt.date, devices: int):
    """`rows` synthetic silver rows, one spark partition (and one file) per event date.

    Within a day, row k is device `k % devices` at slot `k // devices` of a 5-minute grid;
    seq = 1000 + slot, so a correction with seq + 1 wins.
    """
    from pyspark.sql import functions as F

    from shared_schemas import CURRENT
    from shared_schemas.tables import silver_readings

    spec = silver_readings(CURRENT)
    types = list(CURRENT.field("device_type").allowed or ())
    day0 = int(dt.datetime.combine(first_day, dt.time(), dt.UTC).timestamp())
    base = spark.range(0, rows, 1, numPartitions=days).select(
        F.col("id"), F.spark_partition_id().cast("long").alias("day"),
        (F.monotonically_increasing_id()
         - F.shiftleft(F.spark_partition_id().cast("long"), 33)).alias("k"))
    device = F.col("k") % devices
    slot = F.floor(F.col("k") / devices)
    ts = F.timestamp_seconds(F.lit(day0) + F.col("day") * 86400 + slot * 300)
    device_id = F.concat(F.lit("D"), F.lpad(device.cast("string"), 5, "0"))
    site_id = F.concat(F.lit("S"), F.lpad(F.floor(device / 3).cast("string"), 4, "0"))
    power = ((F.col("id") * 7919) % 5000 - 2500).cast("double")
    exprs = {
        "device_id": device_id, "site_id": site_id,
        "device_type": F.element_at(F.array(*[F.lit(t) for t in types]),
                                    (device % len(types) + 1).cast("int")),
        "ts": ts, "seq": 1000 + slot, "power_w": power,
        "energy_import_wh": F.greatest(power, F.lit(0.0)) / 12,
        "energy_export_wh": F.greatest(-power, F.lit(0.0)) / 12,
        "soc_pct": (F.col("id") % 100).cast("double"), "temperature_c": F.lit(21.5),
        "status": F.lit("ok"),
        "event_id": F.concat(F.lit("bench-silver-"), F.col("id").cast("string")),
        "event_source": F.concat(F.lit("/sites/"), site_id, F.lit("/devices/"), device_id),
        "event_type": F.lit(CURRENT.event_type),
        "event_time": F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss'Z'"),
        "event_specversion": F.lit("1.0"),
        "record_id": F.concat(F.lit("bench:silver#"), F.col("id").cast("string")),
        "source_kind": F.lit("file"), "source_file": F.lit("bench:silver"),
        "source_line": F.col("id") + 1,
        "ingest_time": ts + F.expr("INTERVAL 1 MINUTE"),
        "ingest_date": F.to_date(ts + F.expr("INTERVAL 1 MINUTE")),
        "run_id": F.lit("bench-silver"), "batch_id": F.lit(0),
        "event_date": F.to_date(ts), "contract_version": F.lit(CURRENT.version),
        "written_at": F.current_timestamp(),
    }
    columns = []
    for f in spec.schema.fields:
        if f.name not in exprs and not f.nullable:
            raise RuntimeError(f"the benchmark does not know how to fill silver column {f.name!r}")
        columns.append(exprs.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name))
    return base.select(*columns)


def write_merge_batch(folder: Path, options: BenchOptions, largest: int,
                      days: int = 1) -> tuple[Path, int]:
    """The 100k-event micro-batch as 4 JSON-lines files: corrections, then new readings.

    Corrections (seq + 1) hit keys present in every silver size; new readings use slots past
    the largest table's last one. The events are spread evenly over `days` event dates,
    `merge_day` and the days before it.
    """
    from gridlake.generator import Device, _EventMaker
    from shared_schemas import CURRENT

    per_day_small = options.silver_rows[0] // options.silver_days
    corrections = round(options.merge_events * options.merge_corrections)
    if -(-corrections // days) > per_day_small:
        raise RuntimeError(f"{corrections} corrections need {corrections} rows per silver day; "
                           f"the small table has {per_day_small}")
    first_new_slot = -(-largest // options.silver_days // options.merge_devices) + 1
    last_slot = first_new_slot + (options.merge_events - corrections) // days // options.merge_devices
    if last_slot >= 288:
        raise RuntimeError("the merge batch does not fit one day of 5-minute slots; "
                           "raise --merge-devices")
    types = list(CURRENT.field("device_type").allowed or ())
    maker = _EventMaker(random.Random(options.seed), 5 / 60)
    day0 = dt.datetime.combine(options.merge_day, dt.time(), dt.UTC)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    lines = []
    for n in range(options.merge_events):
        within = n if n < corrections else n - corrections  # unique per (day, k)
        day, k = within % days, within // days
        first = 0 if n < corrections else first_new_slot
        index, slot = k % options.merge_devices, first + k // options.merge_devices
        device = Device(index, f"D{index:05d}", f"S{index // 3:04d}", types[index % len(types)])
        ts = (day0 - dt.timedelta(days=day) + dt.timedelta(minutes=5 * slot)
              ).strftime("%Y-%m-%dT%H:%M:%SZ")
        power = float((n * 7919) % 5000 - 2500)
        lines.append(maker.line(device, ts, 1000 + slot + 1, power,
                                50.0 if device.device_type == "battery" else None, 22.0, "ok"))
    quarter = -(-len(lines) // 4)
    for i in range(4):
        (folder / f"batch-{i}.jsonl").write_bytes(
            b"".join(line + b"\n" for line in lines[i * quarter:(i + 1) * quarter]))
    return folder, corrections


def build_silver(spark, root: Path, rows: int, options: BenchOptions):
    """A new lake whose silver table holds `rows` synthetic rows; returns (lake, seconds)."""
    from gridlake.lake import open_lake
    from shared_schemas.tables import silver_readings

    lake = open_lake(str(root), create=True, spark=spark)
    first_day = options.merge_day - dt.timedelta(days=options.silver_days - 1)
    t0 = time.monotonic()
    (silver_frame(spark, rows, options.silver_days, first_day, options.merge_devices)
     .write.format("delta").mode("append").save(lake.path(silver_readings())))
    return lake, time.monotonic() - t0


def merge_once(spark, lake, batch_dir: Path, recorder: StepRecorder) -> dict:
    """One write_batch of the prepared micro-batch (fresh WriteContext), then silver restored."""
    from delta.tables import DeltaTable

    import gridlake.ingest as ingest
    from shared_schemas.tables import silver_readings

    silver = lake.path(silver_readings())
    version = delta_versions(spark, silver)
    ctx = ingest.WriteContext.now(run_id=f"bench-merge-{uuid.uuid4().hex[:8]}", batch_id=0,
                                  kind="bench", source=str(batch_dir))
    raw = _landing_files(spark, batch_dir)
    t0 = time.monotonic()
    with recorder.active():
        result = ingest.write_batch(spark, lake, raw, ctx)
    seconds = time.monotonic() - t0
    steps = recorder.batches(ctx.run_id)[0]
    metrics = merge_metrics(spark, silver, limit=1)
    DeltaTable.forPath(spark, silver).restoreToVersion(version)
    return {
        "write_batch_seconds": seconds,
        "merge_seconds": steps["silver MERGE (merge_into_silver)"]["seconds"],
        "merge_jobs": steps["silver MERGE (merge_into_silver)"]["jobs"],
        "merge_snapshot_seconds": steps["silver MERGE (merge_into_silver)"]["snapshot_seconds"],
        "records_read": result.records_read, "upserted": result.upserted,
        "quarantined": result.quarantined,
        "event_dates": [str(d) for d in result.event_dates],
        "steps": steps, "delta_merge_metrics": metrics[-1] if metrics else None,
    }


# -- the report ---------------------------------------------------------------------------------

def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().split("\n") if Path("/proc/meminfo").exists() else []
    total_kb = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().split("\n")
                    if line.startswith("model name")), "")
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True,
                              check=False).stderr.split("\n")[0]
    except OSError:
        java = "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=False, cwd=BENCH_DIR).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=False,
                               cwd=BENCH_DIR).stdout.split("\n")
    except OSError:
        head, dirty = "unknown", []
    return {
        "git_head": head, "git_modified": [line[3:] for line in dirty if line.strip()],
        "nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(total_kb / 2**20, 1),
        "load_average_at_start": list(os.getloadavg()), "os": platform.platform(),
        "python": sys.version.split()[0], "java": java,
        "pyspark": metadata.version("pyspark"), "delta_spark": metadata.version("delta-spark"),
    }


def _runs(runs: list[dict], key: str, digits: int = 1) -> str:
    return ", ".join(f"{r[key]:.{digits}f}" for r in runs)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _mean_steps(batches: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per step: its metrics per micro-batch (mean over the batches of one run)."""
    totals: dict[str, dict] = defaultdict(lambda: dict.fromkeys(_STEP_FIELDS, 0))
    for steps in batches.values():
        for name, st in steps.items():
            for k in _STEP_FIELDS:
                totals[name][k] += st[k]
    n = max(1, len(batches))
    return {name: {f"{k}_per_batch": t[k] / n for k in _STEP_FIELDS}
            for name, t in totals.items()}


def pipeline_profile(run: dict) -> dict:
    out = {"steps_per_batch": _mean_steps(run["steps"])}
    progress = [p for p in run["progress"] if p["rows"]]
    if progress:
        keys = sorted({k for p in progress for k in p["duration_ms"]})
        out["engine_ms_per_batch"] = {
            k: statistics.mean(p["duration_ms"].get(k, 0) for p in progress) for k in keys}
    if run["merges"]:
        keys = sorted({k for x in run["merges"] for k in x if k != "version"})
        out["merge_metrics_mean"] = {
            k: statistics.mean(x.get(k, 0) for x in run["merges"]) for k in keys}
    return out


def summarize(results: dict) -> dict:
    s: dict = {}
    m = results["measurements"]
    if m.get("ceiling") and m.get("pipeline"):
        ceiling = _median([r["seconds"] for r in m["ceiling"]["runs"]])
        pipeline = _median([r["seconds"] for r in m["pipeline"]["runs"]])
        events = m["ceiling"]["runs"][0]["events"]
        s["ceiling_events_per_s"] = events / ceiling
        s["pipeline_events_per_s"] = events / pipeline
        s["pipeline_over_ceiling"] = ceiling / pipeline
        s["stream_target_met"] = s["pipeline_over_ceiling"] >= STREAM_TARGET
        s["pipeline"] = pipeline_profile(m["pipeline"]["runs"][-1])
        if m.get("pipeline_no_decisions"):
            off = _median([r["seconds"] for r in m["pipeline_no_decisions"]["runs"]])
            s["pipeline_no_decisions_events_per_s"] = events / off
            s["decision_log_throughput_ratio"] = off / pipeline
            s["decision_log_cost"] = 1 - off / pipeline
            s["pipeline_no_decisions"] = pipeline_profile(
                m["pipeline_no_decisions"]["runs"][-1])
        if m.get("ceiling_stream"):
            s["ceiling_stream_events_per_s"] = events / _median(
                [r["seconds"] for r in m["ceiling_stream"]["runs"]])
        if m.get("pipeline_tuned"):
            tuned = _median([r["seconds"] for r in m["pipeline_tuned"]["runs"]])
            s["pipeline_tuned_events_per_s"] = events / tuned
            s["pipeline_tuned_over_ceiling"] = ceiling / tuned
            s["pipeline_tuned"] = pipeline_profile(m["pipeline_tuned"]["runs"][-1])
    if m.get("merge"):
        sizes = m["merge"]["sizes"]
        ordered = sorted(int(k) for k in sizes)
        small, large = str(ordered[0]), str(ordered[-1])

        def med(key: Callable[[dict], float]) -> dict[str, float]:
            return {rows: _median([key(r) for r in sizes[rows]["runs"]]) for rows in sizes}

        s["merge_seconds_median"] = med(lambda r: r["merge_seconds"])
        s["merge_write_batch_seconds_median"] = med(lambda r: r["write_batch_seconds"])
        s["merge_seconds_less_snapshots_median"] = med(
            lambda r: r["merge_seconds"] - r["merge_snapshot_seconds"])
        s["merge_delta_execution_ms_median"] = med(
            lambda r: (r["delta_merge_metrics"] or {}).get("executionTimeMs", 0))
        for key in ("merge_seconds_median", "merge_write_batch_seconds_median",
                    "merge_seconds_less_snapshots_median", "merge_delta_execution_ms_median"):
            small_value = s[key][small]
            s[key.replace("_median", "_ratio")] = (s[key][large] / small_value
                                                   if small_value else None)
        s["merge_ratio"] = s["merge_seconds_ratio"]
        s["merge_target_met"] = s["merge_ratio"] <= MERGE_TARGET
    return s


def step_table(steps: dict[str, dict]) -> list[str]:
    out = ["| step | s / batch | Spark jobs | tasks | of which Delta snapshot jobs | their s |",
           "|---|---:|---:|---:|---:|---:|"]
    for name, st in sorted(steps.items(), key=lambda kv: -kv[1]["seconds_per_batch"]):
        out.append(f"| {name} | {st['seconds_per_batch']:.1f} | {st['jobs_per_batch']:.1f} | "
                   f"{st['tasks_per_batch']:.0f} | {st['snapshot_jobs_per_batch']:.1f} | "
                   f"{st['snapshot_seconds_per_batch']:.1f} |")
    return out


def markdown(results: dict) -> str:
    s, m, mc = results["summary"], results["measurements"], results["machine"]
    o = results["options"]
    load = ", ".join(f"{x:.1f}" for x in mc["load_average_at_start"])
    load_end = ", ".join(f"{x:.1f}" for x in mc.get("load_average_at_end", []))
    out = ["# make bench-stream", "",
           f"Run {results['started_at']} .. {results.get('finished_at', '?')} on "
           f"{mc['nproc']} cores ({mc['cpu']}), {mc['memory_gib']} GiB; load average "
           f"{load} at start, {load_end} at end (a shared machine: compare the ratios, measured "
           f"side by side in one run, more than the absolute numbers). Python {mc['python']}, "
           f"PySpark {mc['pyspark']}, Delta {mc['delta_spark']}, {mc['java']}; Spark `{MASTER}`, "
           f"driver memory {DRIVER_MEMORY}, UI off, otherwise `spark_session()`'s settings.", ""]
    if "ceiling_events_per_s" in s:
        pipe = m["pipeline"]["runs"][-1]
        out += [
            f"Data: `gridlake generate --devices {o['devices']} --days {o['days']} "
            f"--interval-minutes {o['interval_minutes']} --stream-files {o['stream_files']} "
            f"--late-devices 0 --seed {o['seed']}`: {pipe['events']:,} lines, "
            f"{pipe['quarantine_rows']:,} of them invalid; the stream runs "
            f"{pipe['batches']} micro-batches of {o['max_files_per_trigger']} files.", "",
            "| measurement | events/s (median) | runs, seconds |", "|---|---:|---|",
            f"| (a) ceiling: read + split + append to a plain Delta table | "
            f"{s['ceiling_events_per_s']:,.0f} | {_runs(m['ceiling']['runs'], 'seconds')} |",
        ]
        if "ceiling_stream_events_per_s" in s:
            out.append(f"| (a') the ceiling as a stream, same micro-batches | "
                       f"{s['ceiling_stream_events_per_s']:,.0f} | "
                       f"{_runs(m['ceiling_stream']['runs'], 'seconds')} |")
        out.append(f"| (b) pipeline: run_stream, bronze + validation + quarantine + MERGE | "
                   f"{s['pipeline_events_per_s']:,.0f} | "
                   f"{_runs(m['pipeline']['runs'], 'seconds')} |")
        if "pipeline_no_decisions_events_per_s" in s:
            out.append(f"| (b') the same pipeline with `GRIDLAKE_DECISION_LOG=off` | "
                       f"{s['pipeline_no_decisions_events_per_s']:,.0f} | "
                       f"{_runs(m['pipeline_no_decisions']['runs'], 'seconds')} |")
        if "pipeline_tuned_events_per_s" in s:
            out.append(f"| (b*) pipeline with `spark.databricks.delta.snapshotPartitions="
                       f"{o['tuned_snapshot_partitions']}` | "
                       f"{s['pipeline_tuned_events_per_s']:,.0f} | "
                       f"{_runs(m['pipeline_tuned']['runs'], 'seconds')} |")
        out += ["", f"**(b) / (a) = {s['pipeline_over_ceiling']:.0%}** (target ≥ "
                f"{STREAM_TARGET:.0%}): {'met' if s['stream_target_met'] else 'MISSED'}."]
        if "pipeline_tuned_over_ceiling" in s:
            out.append(f"(b*) / (a) = {s['pipeline_tuned_over_ceiling']:.0%}.")
        if "decision_log_cost" in s:
            out.append(f"Decision log: **(b) / (b') = {s['decision_log_throughput_ratio']:.0%}** "
                       f"of the throughput without it, i.e. it costs "
                       f"{s['decision_log_cost']:.0%} (switch: `GRIDLAKE_DECISION_LOG=off`).")
        out.append("")
    if "merge_ratio" in s:
        sizes = m["merge"]["sizes"]
        out += ["| silver rows | MERGE s (median) | MERGE less snapshot jobs, s | "
                "Delta's MERGE executionTimeMs | write_batch s | MERGE runs, s |",
                "|---:|---:|---:|---:|---:|---|"]
        for rows in sorted(sizes, key=int):
            out.append(f"| {int(rows):,} | {s['merge_seconds_median'][rows]:.1f} | "
                       f"{s['merge_seconds_less_snapshots_median'][rows]:.1f} | "
                       f"{s['merge_delta_execution_ms_median'][rows]:,.0f} | "
                       f"{s['merge_write_batch_seconds_median'][rows]:.1f} | "
                       f"{_runs(sizes[rows]['runs'], 'merge_seconds')} |")
        ratios = ", ".join(
            f"{label} {s[key]:.2f}" for label, key in (
                ("less snapshot jobs", "merge_seconds_less_snapshots_ratio"),
                ("Delta executionTimeMs", "merge_delta_execution_ms_ratio"),
                ("whole write_batch", "merge_write_batch_seconds_ratio")) if s.get(key))
        out += ["", f"One micro-batch of {o['merge_events']:,} events on one day "
                f"({o['merge_corrections']:.0%} corrections of stored keys, the rest new "
                f"readings), silver spread over {o['silver_days']} event dates, one file per "
                f"date. **MERGE(large) / MERGE(small) = {s['merge_ratio']:.2f}** (target ≤ "
                f"{MERGE_TARGET}): {'met' if s['merge_target_met'] else 'MISSED'}; "
                f"other ratios: {ratios}.", ""]
    if "pipeline" in s:
        out += ["Where a micro-batch of (b) spends its time (mean per batch; `: own` = the "
                "step less its timed sub-steps):", "", *step_table(s["pipeline"]["steps_per_batch"]), ""]
        engine = s["pipeline"].get("engine_ms_per_batch")
        if engine:
            out += ["Streaming engine, ms per batch: " + ", ".join(
                f"{k} {v:,.0f}" for k, v in engine.items()), ""]
    out.append("Raw timings, per-step breakdowns and Delta's MERGE metrics: `stream.json`.")
    return "\n".join(out) + "\n"


# -- the run -------------------------------------------------------------------------------------

@contextlib.contextmanager
def sql_conf(spark, key: str, value: str | None) -> Iterator[None]:
    """A session setting changed for the block, then restored (None: left as it is)."""
    if value is None:
        yield
        return
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


SNAPSHOT_PARTITIONS = "spark.databricks.delta.snapshotPartitions"


@contextlib.contextmanager
def env_setting(name: str, value: str) -> Iterator[None]:
    """An environment variable set for the block, then restored."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def warm_up(spark, work: Path, recorder: StepRecorder) -> None:
    """Load every class and JIT the hot paths once on a tiny fleet, outside the timings.

    Delta's snapshot partitions are lowered for the warm-up only: it warms the same code in
    a fraction of the time on a small machine.
    """
    from gridlake.generator import GenerateOptions

    small = cached_fleet(GenerateOptions(devices=12, days=1, stream_files=4, late_devices=0.0),
                         "warm-up fleet")
    events = count_lines(small / "stream")
    with sql_conf(spark, SNAPSHOT_PARTITIONS, "2"):
        run_ceiling(spark, small / "stream", work, events)
        run_pipeline(spark, small / "stream", work, events, 4, recorder)


def new_results(options) -> dict:
    """The skeleton of a benchmark's results: start time, machine, options."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    results = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "machine": machine(), "options": asdict(options), "measurements": {},
               "summary": {}}
    say(f"machine: {results['machine']['nproc']} cores, {results['machine']['memory_gib']} GiB, "
        f"load {results['machine']['load_average_at_start']}")
    return results


def int_options(argv: list[str] | None, defaults, prog: str, doc: str, results_name: str):
    """Parse `--name N` for every field of the options dataclass `defaults`, and `--out`.

    Returns (options, out folder, parser): the parser for `parser.error` on checks across
    options."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    for name, value in asdict(defaults).items():
        p.add_argument("--" + name.replace("_", "-"), type=int, default=value)
    p.add_argument("--out", type=Path, default=RESULTS_DIR,
                   help=f"folder for {results_name}.json and .md (default %(default)s)")
    a = p.parse_args(argv)
    return replace(defaults, **{k: v for k, v in vars(a).items() if k != "out"}), a.out, p


def run_sentence(results: dict, setup: str = "") -> str:
    """When and where a run ran: times, cores, memory, load, versions, `setup`, git commit."""
    mc = results["machine"]
    load = (", ".join(f"{x:.1f}" for x in mc.get(key, []))
            for key in ("load_average_at_start", "load_average_at_end"))
    return (f"Run {results['started_at']} .. {results.get('finished_at', '?')} on "
            f"{mc['nproc']} cores ({mc['cpu']}), {mc['memory_gib']} GiB; load average "
            f"{next(load)} at start, {next(load)} at end. Python {mc['python']}, PySpark "
            f"{mc['pyspark']}, Delta {mc['delta_spark']}, {mc['java']}; "
            + (f"{setup}; " if setup else "")
            + f"git {mc['git_head'][:12]}{' (modified)' if mc['git_modified'] else ''}.")


def bench_session(app_name: str, work_name: str):
    """The benchmarks' Spark session (local[2], a 6g driver, UI off) and an empty work folder."""
    from gridlake.session import spark_session

    spark = spark_session(app_name=app_name, master=MASTER, extra_conf={
        "spark.driver.memory": DRIVER_MEMORY, "spark.ui.enabled": "false"})
    work = DATA_DIR / work_name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return spark, work


def main(argv: list[str] | None = None) -> int:
    options, out_dir = parse_args(argv)
    results = new_results(options)
    fleet = cached_fleet(fleet_options(options), "benchmark fleet")
    landing = fleet / "stream"
    events = count_lines(landing)
    say(f"{events:,} landing lines in {len(list(landing.glob('*.jsonl')))} files")

    t0 = time.monotonic()
    spark, work = bench_session("gridlake-bench-stream", "work")
    say(f"spark session in {time.monotonic() - t0:.1f} s; JVM heap "
        f"{spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory() / 2**30:.1f} GiB")
    results["spark_conf"] = {k: v for k, v in spark.sparkContext.getConf().getAll()
                             if not k.startswith("spark.jars") and "host" not in k
                             and "port" not in k and ".id" not in k}
    recorder = StepRecorder(spark)
    m = results["measurements"]
    try:
        say("warm-up on a tiny fleet")
        warm_up(spark, work, recorder)
        say("warm")
        m["ceiling"] = {"runs": []}
        m["pipeline"] = {"runs": []}
        if options.decision_log_off:
            m["pipeline_no_decisions"] = {"runs": []}
        # Interleaved, so both see the same background load as far as possible.
        for i in range(max(options.ceiling_repeats, options.pipeline_repeats)):
            if i < options.ceiling_repeats:
                run = run_ceiling(spark, landing, work, events)
                m["ceiling"]["runs"].append(run)
                say(f"(a) ceiling run {i + 1}: {run['seconds']:.1f} s, "
                    f"{events / run['seconds']:,.0f} events/s")
            if i < options.pipeline_repeats:
                variants = [("pipeline", "(b) pipeline", contextlib.nullcontext())]
                if options.decision_log_off:
                    from gridlake.ingest import DECISION_LOG_SETTING

                    variants.append(("pipeline_no_decisions",
                                     "(b') pipeline without the decision log",
                                     env_setting(DECISION_LOG_SETTING, "off")))
                for key, label, setting in variants:
                    recorder.events.clear()
                    with setting:
                        run = run_pipeline(spark, landing, work, events,
                                           options.max_files_per_trigger, recorder)
                    m[key]["runs"].append(run)
                    say(f"{label} run {i + 1}: {run['seconds']:.1f} s, "
                        f"{events / run['seconds']:,.0f} events/s, {run['batches']} batches, "
                        f"{run['spark_jobs']} Spark jobs, commits {run['delta_commits']}")
        if options.tuned_snapshot_partitions:
            recorder.events.clear()
            with sql_conf(spark, SNAPSHOT_PARTITIONS, str(options.tuned_snapshot_partitions)):
                run = run_pipeline(spark, landing, work, events,
                                   options.max_files_per_trigger, recorder)
            m["pipeline_tuned"] = {"snapshot_partitions": options.tuned_snapshot_partitions,
                                   "runs": [run]}
            say(f"(b*) pipeline, snapshotPartitions={options.tuned_snapshot_partitions}: "
                f"{run['seconds']:.1f} s, {events / run['seconds']:,.0f} events/s")
        if options.stream_ceiling:
            run = run_stream_ceiling(spark, landing, work, events, options.max_files_per_trigger)
            m["ceiling_stream"] = {"runs": [run]}
            say(f"(a') ceiling as a stream: {run['seconds']:.1f} s, "
                f"{events / run['seconds']:,.0f} events/s, {run['batches']} batches")
        if options.validation_profile:
            say("profile: the cost of each stage, batch passes into the no-op sink")
            m["validation_profile"] = run_validation_profile(spark, landing, events)
        if options.silver_rows:
            m["merge"] = run_merge_scaling(spark, work, options, recorder)
    finally:
        finish(results, out_dir, "stream", summarize, markdown, work, spark)
    return 0


def finish(results: dict, out_dir: Path, name: str, summarize: Callable[[dict], dict],
           render: Callable[[dict], str], work: Path, spark) -> None:
    """End a run, whole or not: summarize, write `name`.json and `name`.md, print the report,
    drop the work folder and Spark (None: the run's drivers were child processes)."""
    results["summary"] = summarize(results) if results["measurements"] else {}
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n",
                                         encoding="utf-8")
    (out_dir / f"{name}.md").write_text(render(results), encoding="utf-8")
    say(f"wrote {out_dir / f'{name}.json'} and {out_dir / f'{name}.md'}")
    print(render(results))
    shutil.rmtree(work, ignore_errors=True)
    if spark is not None:
        spark.stop()


def run_merge_scaling(spark, work: Path, options: BenchOptions, recorder: StepRecorder,
                      lakes: dict | None = None) -> dict:
    """(c): build every silver table, then alternate MERGEs of the same batch into each.

    The lakes built are left in `lakes` (rows → lake) when a dict is given, for more runs.
    """
    batch_dir, corrections = write_merge_batch(work / "merge-batch", options,
                                               options.silver_rows[-1])
    sizes: dict[str, dict] = {}
    lakes = {} if lakes is None else lakes
    for rows in options.silver_rows:
        say(f"(c) building a silver table of {rows:,} rows over {options.silver_days} dates")
        lakes[rows], seconds = build_silver(spark, work / f"silver-{rows}", rows, options)
        sizes[str(rows)] = {"build_seconds": seconds, "runs": []}
        say(f"    built in {seconds:.1f} s")
    for i in range(options.merge_repeats):
        for rows in options.silver_rows:
            recorder.events.clear()
            run = merge_once(spark, lakes[rows], batch_dir, recorder)
            sizes[str(rows)]["runs"].append(run)
            dm = run["delta_merge_metrics"] or {}
            say(f"(c) MERGE into {rows:,} rows, run {i + 1}: {run['merge_seconds']:.2f} s "
                f"(write_batch {run['write_batch_seconds']:.2f} s; upserted {run['upserted']:,}; "
                f"Delta: scan {dm.get('scanTimeMs')} ms, rewrite {dm.get('rewriteTimeMs')} ms, "
                f"copied {dm.get('numTargetRowsCopied')} rows)")
    return {"batch_events": options.merge_events, "corrections": corrections,
            "batch_day": str(options.merge_day), "sizes": sizes}


if __name__ == "__main__":
    sys.exit(main())
