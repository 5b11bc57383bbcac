"""`make bench-batch`: what the batch half costs, side by side in one run.

One SparkSession (`local[2]`, a 6g driver, UI off), one lake whose silver table holds
`devices` x `days` of 5-minute readings (synthesized and appended directly, one file per event
date), one site registry. Measured in order:

- (a) **full recompute**: `rollup_range` over every day (device and site rollups);
- (b) **late report**: `late_devices` devices re-send `late_days` days of readings with a higher
  `seq` (corrections), loaded by `backfill` without its own rollup step, then
  (c) **`rollup --changed`**, which must recompute exactly those days, read from the Delta
  history of gold;
- (d) **throughput**: the same fresh records (`throughput_devices` x `throughput_days`) loaded
  by `backfill` into an empty lake and by the stream (`run_stream`, available-now) into
  another, in events per second;
- (e) **cost per day**: `rollup_range` over 1, 3, 9 and 27 consecutive days (those that fit the
  lake), once each, and a least-squares line through them and (a): an estimate of the fixed
  cost of a run and of its cost per day recomputed. When even the shortest of these runs
  took more than 10% of (a), a `--changed` run of that many days or more cannot meet the
  target on this lake;
- (f) **where a 1-day run spends its time**: `one_day_rounds` rounds alternating the run as
  every job runs it (the two gold tables side by side) with the run inside a write lock (one
  table after the other, as when a rollup runs inside another job's guarded write), the
  latter with its steps timed.

Targets (issue 4): (c) <= 10% of (a). Results go to `benchmarks/results/batch.json` and `.md`.

Example:
    $ make bench-batch
    $ .venv/bin/python -m benchmarks.bench_batch --devices 30 --days 10 --late-devices 5 \\
          --throughput-devices 10 --out /tmp/bench                      # a smoke run

Parameters: see `--help`; the defaults are the issue's benchmark (90 days x 500 devices).
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_stream import (
    DRIVER_MEMORY,
    MASTER,
    StepRecorder,
    bench_session,
    finish,
    int_options,
    jobs_started,
    new_results,
    run_pipeline,
    say,
    silver_frame,
)

CHANGED_TARGET = 0.10  # (c) / (a) at most
PER_DAY_SPANS = (1, 3, 9, 27)  # (e): days per `rollup_range` run
SLOTS_PER_DAY = 288  # 5-minute readings
TIMEZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC")


@dataclass(frozen=True)
class BatchBenchOptions:
    devices: int = 500
    days: int = 90
    late_devices: int = 50
    late_days: int = 3
    throughput_devices: int = 200
    throughput_days: int = 3
    files: int = 12
    max_files_per_trigger: int = 4
    one_day_rounds: int = 4
    seed: int = 7


def parse_args(argv: list[str] | None) -> tuple[BatchBenchOptions, Path]:
    options, out, parser = int_options(argv, BatchBenchOptions(),
                                       "python -m benchmarks.bench_batch", __doc__, "batch")
    if options.late_days > options.days or options.late_devices > options.devices:
        parser.error("the late report must fit the lake: --late-days <= --days and "
                     "--late-devices <= --devices")
    if options.one_day_rounds < 1:
        parser.error(f"--one-day-rounds is {options.one_day_rounds}; it must be 1 or more")
    return options, out


# -- the data -----------------------------------------------------------------------------------

def first_day(options: BatchBenchOptions) -> dt.date:
    """The lake's first event date: `days` days ending a week ago, so every ts is in the past."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=options.days + 7)


def last_day(options: BatchBenchOptions) -> dt.date:
    """The lake's last event date."""
    return first_day(options) + dt.timedelta(days=options.days - 1)


def late_days(options: BatchBenchOptions) -> list[dt.date]:
    """The days the late report touches: consecutive days in the middle of the lake."""
    start = first_day(options) + dt.timedelta(days=options.days // 2)
    return [start + dt.timedelta(days=i) for i in range(options.late_days)]


def write_sites(path: Path, devices: int) -> int:
    """The registry of the synthesized fleet (site `S{device // 3}`), timezones in rotation."""
    sites = -(-devices // 3)
    lines = ["site_id,timezone"] + [f"S{i:04d},{TIMEZONES[i % len(TIMEZONES)]}"
                                    for i in range(sites)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sites


def write_readings(folder: Path, devices: int, days: list[dt.date], seq_offset: int,
                   files: int, seed: int) -> int:
    """Valid CloudEvents for `devices` x `days` x 288 slots as JSON-lines files.

    Devices, sites and types match `silver_frame`; seq = 1000 + slot + `seq_offset`, so an
    offset of 1 makes every record a correction that wins over the synthesized silver row.
    """
    from gridlake.generator import Device, _EventMaker
    from shared_schemas import CURRENT

    types = list(CURRENT.field("device_type").allowed or ())
    maker = _EventMaker(random.Random(seed), 5 / 60)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    lines = []
    for day in days:
        day0 = dt.datetime.combine(day, dt.time(), dt.UTC)
        for index in range(devices):
            device = Device(index, f"D{index:05d}", f"S{index // 3:04d}",
                            types[index % len(types)])
            for slot in range(SLOTS_PER_DAY):
                ts = (day0 + dt.timedelta(minutes=5 * slot)).strftime("%Y-%m-%dT%H:%M:%SZ")
                power = float((index * 7919 + slot * 104729) % 5000 - 2500)
                soc = 50.0 if device.device_type == "battery" else None
                lines.append(maker.line(device, ts, 1000 + slot + seq_offset, power, soc,
                                        22.0, "ok"))
    per_file = -(-len(lines) // files)
    for i in range(files):
        chunk = lines[i * per_file:(i + 1) * per_file]
        if chunk:
            (folder / f"report-{i:03d}.jsonl").write_bytes(b"".join(x + b"\n" for x in chunk))
    return len(lines)


def build_lake(spark, root: Path, options: BatchBenchOptions):
    """A lake with the synthesized silver table and the site registry; returns (lake, seconds)."""
    from batch.sites import load_sites
    from gridlake.lake import open_lake
    from shared_schemas.tables import silver_readings

    lake = open_lake(str(root), create=True, spark=spark)
    t0 = time.monotonic()
    rows = options.devices * SLOTS_PER_DAY * options.days
    (silver_frame(spark, rows, options.days, first_day(options), options.devices)
     .write.format("delta").mode("append").save(lake.path(silver_readings())))
    sites_csv = root.parent / f"{root.name}-sites.csv"
    write_sites(sites_csv, options.devices)
    load_sites(spark, lake, sites_csv)
    return lake, time.monotonic() - t0


# -- the measurements ---------------------------------------------------------------------------

def gold_commit(spark, lake, run_id: str) -> dict:
    """What the rollup run `run_id` wrote to gold: its commit (found by `commit_version`, the
    run id in the commit's user metadata) and the days whose rows carry its run id."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from batch.delta_io import commit_version
    from shared_schemas.tables import gold_daily_device_rollups, gold_daily_site_rollups

    out = {}
    for name, spec in (("device", gold_daily_device_rollups()),
                       ("site", gold_daily_site_rollups())):
        path = lake.path(spec)
        version = commit_version(spark, path, run_id)
        commit = (DeltaTable.forPath(spark, path).history(50)
                  .where(F.col("version") == F.lit(version)).first()) if version is not None else None
        metrics = dict(commit["operationMetrics"] or {}) if commit else {}
        days = (spark.read.format("delta").load(path).where(F.col("run_id") == F.lit(run_id))
                .select(spec.partition_by[0]).distinct().count())
        out[name] = {"days_written": days, "commit_version": version,
                     "files_added": int(metrics.get("numFiles", metrics.get("numAddedFiles", 0))),
                     "files_removed": int(metrics.get("numRemovedFiles", 0)),
                     "rows_written": int(metrics.get("numOutputRows", 0))}
    return out


def timed(fn):
    t0 = time.monotonic()
    value = fn()
    return value, time.monotonic() - t0


def run_rollups(spark, lake, options: BatchBenchOptions, work: Path) -> dict:
    """(a), (b), (c), (e) and (f) on the big lake."""
    from batch.late_reports import backfill
    from batch.rollups import rollup_changed, rollup_range

    first, last = first_day(options), last_day(options)
    m: dict = {}
    initial, seconds = timed(lambda: rollup_changed(spark, lake))
    m["initial_changed"] = {"seconds": seconds, "days": len(initial.days)}
    say(f"  first `rollup --changed` (no cursor yet: every day): {seconds:.1f} s, "
        f"{len(initial.days)} days")

    full, seconds = timed(lambda: rollup_range(spark, lake, first, last))
    m["full"] = {"seconds": seconds, "days": len(full.days), "local_days": len(full.local_days),
                 "gold": gold_commit(spark, lake, full.run_id)}
    say(f"(a) full recompute of {len(full.days)} days: {seconds:.1f} s")

    report = work / "late-report"
    events = write_readings(report, options.late_devices, late_days(options), seq_offset=1,
                            files=max(1, options.late_days), seed=options.seed)
    loaded, seconds = timed(lambda: backfill(spark, lake, [report], rollup=False,
                                             progress=False))
    upserted = loaded.total("upserted")
    if upserted != events:
        raise RuntimeError(f"the late report upserted {upserted} of its {events} corrections")
    m["late_backfill"] = {"seconds": seconds, "events": events, "upserted": upserted,
                          "events_per_second": events / seconds}
    say(f"(b) late report, {events:,} events over {options.late_days} days: backfill "
        f"{seconds:.1f} s ({events / seconds:,.0f} events/s)")

    changed, seconds = timed(lambda: rollup_changed(spark, lake))
    gold = gold_commit(spark, lake, changed.run_id)
    expected = late_days(options)
    if changed.days != expected or gold["device"]["days_written"] != len(expected):
        raise RuntimeError(f"`rollup --changed` recomputed {changed.days} (gold: "
                           f"{gold['device']['days_written']} days); the report touched {expected}")
    m["changed"] = {"seconds": seconds, "days": [str(d) for d in changed.days],
                    "local_days": [str(d) for d in changed.local_days], "gold": gold}
    say(f"(c) `rollup --changed`: {seconds:.1f} s for {len(changed.days)} days "
        f"({len(changed.local_days)} local days of sites)")
    m["per_day"] = cost_per_day(spark, lake, options)
    m["one_day"] = one_day_profile(spark, lake, options)
    return m


def cost_per_day(spark, lake, options: BatchBenchOptions) -> list[dict]:
    """(e): `rollup_range` over spans of consecutive days from the late days' start (moved
    back where a span would run past the lake's last day), once each."""
    from batch.rollups import rollup_range

    runs = []
    last = last_day(options)
    for span in (n for n in PER_DAY_SPANS if n <= options.days):
        start = min(late_days(options)[0], last - dt.timedelta(days=span - 1))
        end = start + dt.timedelta(days=span - 1)
        result, seconds = timed(functools.partial(rollup_range, spark, lake, start, end))
        runs.append({"days": len(result.days), "seconds": seconds})
        say(f"(e) `rollup --from {start} --to {end}`: {seconds:.1f} s, {len(result.days)} "
            "day(s)")
    return runs


def rollup_steps() -> list[tuple[object, str, Callable[..., str]]]:
    """The steps of a rollup run that (f) times: (module, function, step name)."""
    import batch.lake_state as lake_state
    import batch.rollups as rollups

    def named(text: str) -> Callable[..., str]:
        return lambda *a, **k: text

    return [
        (rollups, "gate_rows", named("quality gate: computes the rows and checks them")),
        (rollups, "write_results", named("quality results write")),
        (lake_state, "days_computed_after", named("newer-run check (delta-rs)")),
        (rollups, "replace_dates", named("gold write (replaceWhere of the days)")),
        (rollups, "commit_version", named("gold commit lookup")),
        (rollups, "_log_run", named("run log append")),
    ]


def one_day_profile(spark, lake, options: BatchBenchOptions) -> dict:
    """(f): where a 1-day `rollup_range` spends its time.

    Alternating, `one_day_rounds` times, which goes first swapped every round: the run as
    every job runs it (the two gold tables side by side, in two threads), and the run inside
    a write lock, where the two tables go one after the other (as when a rollup runs inside
    another job's guarded write); the latter with its steps timed, so that each step's Spark
    jobs are its own.
    """
    from batch.rollups import rollup_range
    from gridlake.retry import guarded_write

    day = late_days(options)[0]
    recorder = StepRecorder(spark)
    out: dict = {"day": str(day), "side_by_side": [], "one_after_the_other": [], "jobs": []}

    def side_by_side() -> None:
        _, seconds = timed(lambda: rollup_range(spark, lake, day, day))
        out["side_by_side"].append(seconds)

    def one_after_the_other() -> None:
        first_job = jobs_started(spark)
        with recorder.active(rollup_steps()):
            _, seconds = timed(lambda: guarded_write(
                lambda: rollup_range(spark, lake, day, day), "bench: one day, one table at a time"))
        out["one_after_the_other"].append(seconds)
        out["jobs"].append(jobs_started(spark) - first_job)

    for n in range(options.one_day_rounds):
        for run in (side_by_side, one_after_the_other)[::1 if n % 2 == 0 else -1]:
            run()
    out["steps"] = {name: {k: v / options.one_day_rounds for k, v in step.items()}
                    for name, step in recorder.totals().items()}
    say(f"(f) 1-day rollup: side by side {_runs(out['side_by_side'])} s, one table after the "
        f"other {_runs(out['one_after_the_other'])} s (these: {statistics.mean(out['jobs']):.0f} "
        "Spark jobs a run)")
    return out


def _runs(seconds: list[float]) -> str:
    return ", ".join(f"{s:.1f}" for s in seconds)


def run_throughput(spark, work: Path, options: BatchBenchOptions) -> dict:
    """(d): the same records through `backfill` and through the stream, each into a new lake."""
    from batch.late_reports import backfill
    from gridlake.lake import open_lake

    days = [first_day(options) + dt.timedelta(days=i) for i in range(options.throughput_days)]
    folder = work / "throughput"
    events = write_readings(folder, options.throughput_devices, days, seq_offset=0,
                            files=options.files, seed=options.seed + 1)
    say(f"(d) {events:,} events in {options.files} files")

    lake = open_lake(str(work / f"lake-backfill-{uuid.uuid4().hex[:8]}"), create=True,
                     spark=spark)
    loaded, seconds = timed(lambda: backfill(spark, lake, [folder], rollup=False,
                                             progress=False))
    if loaded.total("records_read") != events or loaded.total("upserted") != events:
        raise RuntimeError(f"backfill read {loaded.total('records_read')} and upserted "
                           f"{loaded.total('upserted')} of {events} events")
    out = {"events": events, "files": options.files,
           "backfill": {"seconds": seconds, "events_per_second": events / seconds,
                        "batches": len(loaded.batches)}}
    say(f"  backfill: {seconds:.1f} s, {events / seconds:,.0f} events/s, "
        f"{len(loaded.batches)} batch(es)")

    stream = run_pipeline(spark, folder, work, events, options.max_files_per_trigger,
                          StepRecorder(spark))
    out["stream"] = {"seconds": stream["seconds"], "events_per_second": events / stream["seconds"],
                     "batches": stream["batches"], "max_files_per_trigger":
                     options.max_files_per_trigger}
    say(f"  stream: {stream['seconds']:.1f} s, {events / stream['seconds']:,.0f} events/s, "
        f"{stream['batches']} micro-batches")
    return out


# -- the report ---------------------------------------------------------------------------------

def summarize(results: dict) -> dict:
    m, out = results["measurements"], {}
    if "full" in m and "changed" in m:
        ratio = m["changed"]["seconds"] / m["full"]["seconds"]
        out["changed_over_full"] = ratio
        out["changed_target_met"] = ratio <= CHANGED_TARGET
    if "throughput" in m:
        t = m["throughput"]
        out["backfill_over_stream"] = (t["backfill"]["events_per_second"]
                                       / t["stream"]["events_per_second"])
    out.update(cost_model(m))
    return out


def cost_model(m: dict) -> dict:
    """(e)'s line through its runs and the full recompute (a): fixed and per-day seconds, and
    the shortest run's share of (a). Empty without two distinct lengths of run."""
    if not m.get("per_day") or "full" not in m:
        return {}
    runs = [*m["per_day"], m["full"]]
    days = [r["days"] for r in runs]
    if len(set(days)) < 2:
        return {}
    per_day, fixed = statistics.linear_regression(days, [r["seconds"] for r in runs])
    shortest = min(m["per_day"], key=lambda r: r["days"])
    return {"fixed_seconds": fixed, "seconds_per_day": per_day,
            "fixed_over_full": fixed / m["full"]["seconds"],
            "shortest_days": shortest["days"],
            "shortest_over_full": shortest["seconds"] / m["full"]["seconds"]}


def cost_model_lines(m: dict, s: dict) -> list[str]:
    """The markdown of (e): its runs, the line, and what the line says of the target."""
    if "fixed_seconds" not in s:
        return []
    lines = ["", "Cost per day: `rollup --from --to` over spans of consecutive days, once each, "
             "in the same driver:", "", "| days | seconds |", "|---:|---:|"]
    lines += [f"| {r['days']} | {r['seconds']:.1f} |" for r in m["per_day"]]
    lines.append(f"| {m['full']['days']} (the full recompute) | {m['full']['seconds']:.1f} |")
    days = f"{s['shortest_days']} day" + ("" if s["shortest_days"] == 1 else "s")
    bound = (f"so no `--changed` run of {days} or more reaches the target on this lake and "
             "machine" if s["shortest_over_full"] > CHANGED_TARGET else
             "within the target")
    lines += ["", f"A least-squares line through these runs: about **{s['fixed_seconds']:.1f} s "
              f"per run plus {s['seconds_per_day']:.2f} s per day** (the fixed part estimated "
              f"at {s['fixed_over_full']:.1%} of the full recompute). The shortest run, "
              f"{days}, took {s['shortest_over_full']:.1%} of the full recompute, {bound}."]
    return lines


def one_day_lines(m: dict) -> list[str]:
    """The markdown of (f): both ways of running a 1-day rollup, and its steps."""
    if "one_day" not in m:
        return []
    p = m["one_day"]
    side, serial = statistics.median(p["side_by_side"]), statistics.median(p["one_after_the_other"])
    lines = ["", f"Where a 1-day run ({p['day']}) spends its time, {len(p['side_by_side'])} "
             "rounds alternating (which goes first swapped every round): the two gold tables "
             f"side by side (every job's way) took {_runs(p['side_by_side'])} s (median "
             f"{side:.1f}); one after the other (inside a write lock, as when a rollup runs "
             f"inside another job's guarded write) {_runs(p['one_after_the_other'])} s (median "
             f"{serial:.1f}; side by side / one after the other = {side / serial:.2f}), "
             f"{statistics.mean(p['jobs']):.0f} Spark jobs a run. The steps of the one-after-"
             "the-other runs (mean per run; both tables):", "",
             "| step | s / run | Spark jobs | tasks | of which Delta snapshot jobs |",
             "|---|---:|---:|---:|---:|"]
    steps = sorted(p["steps"].items(), key=lambda item: -item[1]["seconds"])
    for name, step in steps:
        lines.append(f"| {name} | {step['seconds']:.2f} | {step['jobs']:.0f} | "
                     f"{step['tasks']:.0f} | {step['snapshot_jobs']:.0f} |")
    rest = statistics.mean(p["one_after_the_other"]) - sum(st["seconds"] for _, st in steps)
    rest_jobs = statistics.mean(p["jobs"]) - sum(st["jobs"] for _, st in steps)
    lines.append(f"| the rest (pinning silver, the site registry, planning) | {rest:.2f} | "
                 f"{rest_jobs:.0f} | | |")
    return lines


def markdown(results: dict) -> str:
    mc, o, m, s = results["machine"], results["options"], results["measurements"], results["summary"]
    lines = [
        "# make bench-batch", "",
        f"Run {results['started_at']} .. {results.get('finished_at', '?')} on {mc['nproc']} cores "
        f"({mc['cpu']}), {mc['memory_gib']} GiB; load average "
        f"{', '.join(f'{x:.1f}' for x in mc['load_average_at_start'])} at start, "
        f"{', '.join(f'{x:.1f}' for x in mc.get('load_average_at_end', []))} at end "
        "(a shared machine: compare the ratios, measured side by side in one run, more than the "
        f"absolute numbers). Python {mc['python']}, PySpark {mc['pyspark']}, Delta "
        f"{mc['delta_spark']}, {mc['java']}; Spark `{MASTER}`, driver memory {DRIVER_MEMORY}, "
        "UI off.", "",
        f"Lake: silver holds {o['devices']} devices x {o['days']} days of 5-minute readings "
        f"({o['devices'] * o['days'] * SLOTS_PER_DAY:,} rows, one file per event date, built in "
        f"{m.get('build_seconds', 0):.0f} s), {-(-o['devices'] // 3)} sites in "
        f"{len(TIMEZONES)} timezones.", "",
    ]
    if "full" in m:
        lines += ["| measurement | seconds | days recomputed | gold files removed / added |",
                  "|---|---:|---:|---|"]
        full_gold = m["full"]["gold"]["device"]
        lines.append(f"| (a) `rollup --from --to`, every day | {m['full']['seconds']:.1f} | "
                     f"{m['full']['days']} | {full_gold['files_removed']} / "
                     f"{full_gold['files_added']} |")
    if "late_backfill" in m:
        lb = m["late_backfill"]
        lines.append(f"| (b) `backfill` of the late report ({lb['events']:,} corrections, "
                     f"{o['late_devices']} devices x {o['late_days']} days) | {lb['seconds']:.1f} "
                     "| - | - |")
    if "changed" in m:
        ch, gold = m["changed"], m["changed"]["gold"]["device"]
        lines.append(f"| (c) `rollup --changed` after it | {ch['seconds']:.1f} | "
                     f"{len(ch['days'])} ({', '.join(ch['days'])}) | {gold['files_removed']} / "
                     f"{gold['files_added']} |")
    if "changed_over_full" in s:
        verdict = "met" if s["changed_target_met"] else "MISSED"
        lines += ["", f"**(c) / (a) = {s['changed_over_full']:.1%}** (target <= "
                  f"{CHANGED_TARGET:.0%}): {verdict}. Gold rewrote only the "
                  f"{m['changed']['gold']['device']['days_written']} touched days (from the Delta "
                  "history of `gold/daily_device_rollups`)."]
    if "throughput" in m:
        t = m["throughput"]
        lines += ["", f"Throughput on the same {t['events']:,} new readings "
                  f"({o['throughput_devices']} devices x {o['throughput_days']} days, "
                  f"{t['files']} files), each into an empty lake:", "",
                  "| path | seconds | events/s | batches |", "|---|---:|---:|---:|",
                  f"| `gridlake backfill` | {t['backfill']['seconds']:.1f} | "
                  f"{t['backfill']['events_per_second']:,.0f} | {t['backfill']['batches']} |",
                  f"| `gridlake stream --available-now` (max {o['max_files_per_trigger']} files "
                  f"per trigger) | {t['stream']['seconds']:.1f} | "
                  f"{t['stream']['events_per_second']:,.0f} | {t['stream']['batches']} |", "",
                  f"backfill / stream = **{s['backfill_over_stream']:.2f}x** events per second."]
    lines += cost_model_lines(m, s)
    lines += one_day_lines(m)
    lines += ["", "Raw timings and gold commit metrics: `batch.json`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options, out_dir = parse_args(argv)
    results = new_results(options)
    spark, work = bench_session("gridlake-bench-batch", "batch-work")
    m = results["measurements"]
    try:
        say(f"building the lake: {options.devices} devices x {options.days} days")
        lake, m["build_seconds"] = build_lake(spark, work / "lake", options)
        say(f"  built in {m['build_seconds']:.1f} s")
        m.update(run_rollups(spark, lake, options, work))
        m["throughput"] = run_throughput(spark, work, options)
    finally:
        finish(results, out_dir, "batch", summarize, markdown, work, spark)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
